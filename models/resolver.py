"""Find a model file by name, in a fixed order, and prove it is the file the manifest names.

Order: explicit path -> ``$GRIDWATCH_MODELS`` -> local cache (``$GRIDWATCH_CACHE`` or
``~/.cache/gridwatch/models``) -> ``../shared/models`` (beside the checkout, or beside the working
directory) -> download into the cache. Edge boxes are often offline, so the download is last and
its failure says exactly where to put the file instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gridwatch.models.manifest import ModelSpec, load_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]


class ModelNotFound(RuntimeError):
    """No copy of the model could be found or fetched."""


class ChecksumMismatch(RuntimeError):
    """A file with the model's name whose bytes are not the manifest's."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    path: Path
    source: str  # which step of the search order found it


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("GRIDWATCH_CACHE", Path.home() / ".cache" / "gridwatch")) / "models"


def search_dirs() -> list[tuple[str, Path]]:
    """The directories searched, in order, each with the name of its step."""
    dirs: list[tuple[str, Path]] = []
    if env := os.environ.get("GRIDWATCH_MODELS"):
        dirs.append(("GRIDWATCH_MODELS", Path(env)))
    dirs.append(("cache", cache_dir()))
    for base in (REPO_ROOT, Path.cwd()):
        shared = (base.parent / "shared" / "models").resolve()
        if all(shared != d for _, d in dirs):
            dirs.append(("shared", shared))
    return dirs


def _verified(spec: ModelSpec, path: Path, source: str) -> ResolvedModel:
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise ChecksumMismatch(
            f"{path} is not {spec.name}: sha256 {actual} but the manifest says {spec.sha256}"
        )
    return ResolvedModel(spec, path, source)


def download(spec: ModelSpec, target_dir: Path, timeout: float = 30.0) -> Path:
    """Fetch into the cache atomically; the checksum is verified by the caller."""
    target_dir.mkdir(parents=True, exist_ok=True)
    with (
        urllib.request.urlopen(spec.url, timeout=timeout) as response,
        tempfile.NamedTemporaryFile(dir=target_dir, delete=False, suffix=".part") as tmp,
    ):
        try:
            shutil.copyfileobj(response, tmp)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    final = target_dir / spec.file
    Path(tmp.name).replace(final)
    return final


def resolve_model(name: str, explicit_path: str | Path | None = None, allow_download: bool = True) -> ResolvedModel:
    """Return a verified local copy of model ``name``."""
    spec = load_manifest().get(name)
    if explicit_path is not None:
        path = Path(explicit_path)
        if not path.is_file():
            raise ModelNotFound(f"model path {path} does not exist")
        return _verified(spec, path, "explicit")
    for source, directory in search_dirs():
        candidate = directory / spec.file
        if candidate.is_file():
            return _verified(spec, candidate, source)
    looked = "\n".join(f"  - {d / spec.file} ({s})" for s, d in search_dirs())
    if allow_download:
        try:
            return _verified(spec, download(spec, cache_dir()), "download")
        except ChecksumMismatch:
            raise
        except Exception as exc:
            reason = f"download from {spec.url} failed: {exc}"
    else:
        reason = "downloads are disabled"
    raise ModelNotFound(
        f"model {name!r} ({spec.file}, {spec.licence}) not found; {reason}.\n"
        f"Looked in:\n{looked}\n"
        f"Put {spec.file} (sha256 {spec.sha256}) in one of those places, "
        "or point GRIDWATCH_MODELS at its directory."
    )
