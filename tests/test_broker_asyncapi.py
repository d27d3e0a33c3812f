"""Issue 8, acceptance 2: the AsyncAPI document is valid AsyncAPI 3.0.0, matches the code, and has a page.

Validity is checked against the schema AsyncAPI publishes in the npm package ``@asyncapi/specs``
(never copied into this repository). Install it once before the tests:

    npm install --no-save --no-package-lock --prefix .cache/asyncapi @asyncapi/specs@6.11.1
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator, Draft202012Validator

from gridwatch.broker import topics
from gridwatch.broker.asyncapi.channels import CHANNELS
from gridwatch.broker.asyncapi.document import ASYNCAPI_DIR, DOCUMENT_PATH, address, build
from gridwatch.broker.cli import broker
from gridwatch.broker.contract import PAYLOAD_MODELS
from gridwatch.broker.schemas import schema_documents

REPO = Path(__file__).resolve().parents[1]
SPECS_VERSION = "6.11.1"
ASYNCAPI_SCHEMA = REPO / ".cache/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json"
INSTALL = f"npm install --no-save --no-package-lock --prefix .cache/asyncapi @asyncapi/specs@{SPECS_VERSION}"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))


def official_schema() -> dict[str, Any]:
    if not ASYNCAPI_SCHEMA.exists():
        pytest.fail(f"the published AsyncAPI 3.0.0 JSON Schema is missing; from the repository root run: {INSTALL}")
    package = json.loads((ASYNCAPI_SCHEMA.parents[1] / "package.json").read_text())
    assert package["version"] == SPECS_VERSION, f"@asyncapi/specs {package['version']} installed; run: {INSTALL}"
    return json.loads(ASYNCAPI_SCHEMA.read_text())


def test_committed_files_are_generated_from_the_code() -> None:
    result = CliRunner().invoke(broker, ["asyncapi", "--check"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (ASYNCAPI_DIR / "README.md").read_text(encoding="utf-8").startswith("# GridWatch MQTT contract")


def test_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    schema = official_schema()
    assert schema["$schema"].startswith("http://json-schema.org/draft-07/schema")  # validate as it declares
    errors = sorted(Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10])


def test_validator_rejects_a_broken_document(document: dict[str, Any]) -> None:
    """The validity check above can fail: an operation with an unknown action is not AsyncAPI."""
    broken = json.loads(json.dumps(document))
    broken["operations"]["publishEvents"]["action"] = "publish"  # AsyncAPI 2 wording
    assert not Draft7Validator(official_schema()).is_valid(broken)


def test_internal_references_resolve(document: dict[str, Any]) -> None:
    refs = re.findall(r"'\$ref': '(#/[^']+)'", str(document))
    assert refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_payloads_are_the_schemas_the_code_validates_with(document: dict[str, Any]) -> None:
    generated = schema_documents()
    messages = document["components"]["messages"]
    assert set(messages) == set(PAYLOAD_MODELS), "every payload model is a message, and nothing else"
    for key, message in messages.items():
        schema_file = (DOCUMENT_PATH.parent / message["payload"]["schema"]["$ref"]).resolve()
        assert schema_file.parent == (REPO / "broker" / "schemas").resolve()
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        assert schema == generated[schema_file.name], f"{schema_file.name} is not what the models generate"
        assert message["payload"]["schemaFormat"].endswith("version=2020-12")
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert message["examples"], f"{key} has no example"
        for example in message["examples"]:
            Draft202012Validator(schema).validate(example["payload"])
            model = PAYLOAD_MODELS[key].model_validate(example["payload"])
            assert model.model_dump(mode="json", by_alias=True) == example["payload"]


def test_every_topic_builder_is_a_channel() -> None:
    builders = {name for name, value in inspect.getmembers(topics, inspect.isfunction)
                if name.endswith("_topic") and not name.startswith("parse_") and value.__module__ == topics.__name__}
    assert builders == {channel.builder.__name__ for channel in CHANNELS}, \
        "describe each topic builder in broker/asyncapi/channels.py"


def test_addresses_match_the_builders(document: dict[str, Any]) -> None:
    parameters = document["components"]["parameters"]
    for channel in CHANNELS:
        template, names = address(channel)
        assert document["channels"][channel.key]["address"] == template
        values = {name: parameters[name]["examples"][0] for name in names}
        built = channel.builder(*(int(v) if names[n].annotation in (int, "int") else v for n, v in values.items()))
        assert template.format(**values) == built
        operation = next(op for op in document["operations"].values()
                         if op["channel"]["$ref"] == f"#/channels/{channel.key}")
        assert operation["bindings"]["mqtt"] == {"qos": channel.qos, "retain": channel.retain,
                                                 "bindingVersion": "0.2.0"}


def test_build_is_deterministic() -> None:
    assert build() == build()
