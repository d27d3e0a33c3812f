"""``gridwatch models``: list the manifest, show where each model resolves, verify checksums."""

from __future__ import annotations

import sys

import click

from gridwatch.models.manifest import load_manifest
from gridwatch.models.resolver import ChecksumMismatch, ModelNotFound, resolve_model


@click.group()
def models() -> None:
    """Model manifest and resolver."""


@models.command("list")
def list_models() -> None:
    """Every model the manifest names, with licence and upstream."""
    for spec in load_manifest().models:
        click.echo(f"{spec.name:22} {spec.licence:12} {spec.file:28} {spec.url}")


@models.command()
@click.argument("names", nargs=-1)
@click.option("--no-download", is_flag=True, help="Only look locally.")
def verify(names: tuple[str, ...], no_download: bool) -> None:
    """Resolve each model and check its sha256 against the manifest (all models by default)."""
    failed = 0
    for name in names or [s.name for s in load_manifest().models]:
        try:
            found = resolve_model(name, allow_download=not no_download)
        except (ModelNotFound, ChecksumMismatch, KeyError) as exc:
            failed += 1
            click.echo(f"FAIL {name}: {exc}", err=True)
            continue
        click.echo(f"ok   {name}: {found.path} (found via {found.source}, sha256 matches)")
    sys.exit(1 if failed else 0)
