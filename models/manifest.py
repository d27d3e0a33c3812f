"""The model manifest: what each model is, where it comes from, its checksum and licence."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    file: str
    url: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str
    task: str
    layout: str
    input_size: tuple[int, int]
    input_format: str
    classes: tuple[str, ...] = ()


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[ModelSpec, ...]

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.models)
        raise KeyError(f"unknown model {name!r} (the manifest knows: {known})")


@cache
def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    return Manifest.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
