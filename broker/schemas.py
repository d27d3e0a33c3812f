"""JSON Schemas of the payloads, generated from the typed models in ``contract.py``.

The files in ``broker/schemas/`` are what integrators read; ``schema_documents()`` is what they must
equal, and a test checks that they do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gridwatch.broker.contract import PAYLOAD_MODELS

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document for every payload of the contract."""
    docs = {}
    for name, model in PAYLOAD_MODELS.items():
        doc = model.model_json_schema(by_alias=True, mode="validation")
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$id": f"https://gridwatch.invalid/schemas/{name}.v1.json", **doc}
        docs[f"{name}.v1.json"] = doc
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, doc in schema_documents().items():
        path = directory / file_name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written
