"""Build the AsyncAPI 3.0.0 document from topics.py, the contract models and ``channels.CHANNELS``.

Addresses come from calling each topic builder with its own parameter names as ids (they are valid
ids) and turning those segments into ``{parameter}`` expressions, so the document cannot disagree
with the topics the code publishes on. Payloads ``$ref`` the committed JSON Schemas rather than
inlining them: there is one schema per payload, and it is the one the code validates with.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from gridwatch.broker import topics
from gridwatch.broker.asyncapi.channels import CHANNELS, Channel
from gridwatch.broker.asyncapi.examples import examples
from gridwatch.broker.contract import PAYLOAD_MODELS
from gridwatch.broker.mqtt_url import DEFAULT_PORTS

ASYNCAPI_DIR = Path(__file__).parent
DOCUMENT_PATH = ASYNCAPI_DIR / "asyncapi.yaml"
# Our schemas use JSON Schema 2020-12 (``prefixItems``); AsyncAPI accepts any declared schema format.
SCHEMA_FORMAT = "application/schema+json;version=2020-12"
MQTT_BINDING_VERSION = "0.2.0"
# Every parameter of a topic builder needs a line here (a test builds the document, so a new one fails).
_PARAMETERS = {
    "site_id": ("The compound (site).", "demo-compound"),
    "node_id": ("The edge node (box) that publishes.", "gate-north"),
    "camera_id": ("The camera on that node.", "cam-1"),
    "ticket_id": ("The server's ticket number.", "17"),
    "uniform_id": ("The uniform (its id in the edge's uniform catalogue).", "meituan"),
}


def schema_ref(payload: str) -> str:
    """The payload schema file, relative to the document (both ship inside ``gridwatch.broker``)."""
    return f"../schemas/{payload}.v1.json"


def _is_int(parameter: inspect.Parameter) -> bool:
    return parameter.annotation in (int, "int")


def address(channel: Channel) -> tuple[str, dict[str, inspect.Parameter]]:
    """The channel address with ``{parameter}`` expressions, and the builder's parameters."""
    parameters = inspect.signature(channel.builder).parameters
    tokens = {name: str(1000 + i) if _is_int(p) else name for i, (name, p) in enumerate(parameters.items())}
    segments = channel.builder(*(int(t) if _is_int(parameters[n]) else t for n, t in tokens.items())).split("/")
    for name, token in tokens.items():
        if segments.count(token) != 1:
            raise ValueError(f"cannot place parameter {name} of {channel.builder.__name__} in {'/'.join(segments)}")
        segments[segments.index(token)] = f"{{{name}}}"
    return "/".join(segments), dict(parameters)


def _parameter(parameter: inspect.Parameter) -> dict[str, Any]:
    description, example = _PARAMETERS[parameter.name]
    rule = "A positive integer." if _is_int(parameter) else f"Matches `{topics.ID_PATTERN}` (no '/', '+' or '#')."
    return {"description": f"{description} {rule}", "examples": [example]}


def _message(payload: str) -> dict[str, Any]:
    model = PAYLOAD_MODELS[payload]
    doc = inspect.getdoc(model) or ""
    return {
        "name": payload,
        "title": model.__name__,
        "summary": doc.split("\n\n")[0].replace("\n", " "),
        "contentType": "application/json",
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": schema_ref(payload)}},
        "examples": [{"name": name, "summary": summary, "payload": instance.model_dump(mode="json", by_alias=True)}
                     for name, summary, instance in examples()[payload]],
    }


def build() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for channel in CHANNELS:
        where, names = address(channel)
        parameters.update({name: _parameter(p) for name, p in names.items()})
        channels[channel.key] = {
            "address": where,
            "summary": channel.summary,
            "parameters": {name: {"$ref": f"#/components/parameters/{name}"} for name in names},
            "messages": {channel.payload: {"$ref": f"#/components/messages/{channel.payload}"}},
        }
        operations[f"publish{channel.key[0].upper()}{channel.key[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel.key}"},
            "summary": f"{channel.publisher} → {channel.readers}",
            "messages": [{"$ref": f"#/channels/{channel.key}/messages/{channel.payload}"}],
            "bindings": {"mqtt": {"qos": channel.qos, "retain": channel.retain,
                                  "bindingVersion": MQTT_BINDING_VERSION}},
            "x-gridwatch-publisher": channel.publisher,
            "x-gridwatch-readers": channel.readers,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "GridWatch MQTT contract",
            "version": f"{topics.VERSION.removeprefix('v')}.0.0",
            "description": (
                "Camera events, node and camera health, and grid ticket transitions of a GridWatch site.\n\n"
                "The application described is the GridWatch site (its edge nodes and its server): every "
                "operation is something it publishes; integrators receive. Ids are topic segments and never "
                f"contain '/', '+' or '#'. Subscribe to `{topics.EVENTS_SUBSCRIPTION}` for events, "
                f"`{topics.TICKET_TRANSITIONS_SUBSCRIPTION}` for ticket transitions. Generated by "
                "`gridwatch broker asyncapi`; do not edit."),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": f"{{host}}:{DEFAULT_PORTS['mqtts']}",
                "protocol": "mqtts",
                "protocolVersion": "3.1.1",
                "description": ("The site's Mosquitto (`gridwatch broker init`): TLS with a client certificate "
                                "from the site CA and the user name and password issued with it "
                                "(`gridwatch broker add-node`, `add-integrator`). The client id is replaced "
                                "by the user name."),
                "variables": {"host": {"description": "The broker's host name, as in its certificate."}},
                "security": [{"$ref": "#/components/securitySchemes/siteCertificate"}],
            },
            "demo": {
                "host": f"localhost:{DEFAULT_PORTS['mqtt']}",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "The embedded broker of `gridwatch demo` and `gridwatch broker run`: anonymous, "
                               "for development only.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {channel.payload: _message(channel.payload) for channel in CHANNELS},
            "parameters": parameters,
            "securitySchemes": {
                "siteCertificate": {
                    "type": "X509",
                    "description": "A client certificate signed by the site CA, plus its user name and password.",
                },
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def generated_files() -> dict[Path, str]:
    """Every file this package generates, with its expected content."""
    from gridwatch.broker.asyncapi.markdown import render_markdown

    document = build()
    return {DOCUMENT_PATH: render(document), ASYNCAPI_DIR / "README.md": render_markdown(document)}
