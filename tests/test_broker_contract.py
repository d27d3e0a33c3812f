"""The MQTT contract: topic ids, event validation and the published JSON Schemas.

Integrators read broker/schemas/*.json, never our code, so these tests pin the committed files to the
models and check that the JSON Schema accepts and rejects the same payloads the models do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraConfig, Event, EventType, NodeState, NodeStatus, Phase, parse_event
from gridwatch.broker.schemas import SCHEMA_DIR, render, schema_documents

T0 = datetime(2025, 5, 1, 8, 30, tzinfo=UTC)


def make_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "incident_id": "0123456789abcdef0123456789abcdef",
        "type": EventType.LOITERING,
        "phase": Phase.START,
        "site_id": "site-1",
        "node_id": "node-1",
        "camera_id": "cam-1",
        "zone_id": "lobby",
        "object": {"class": "person", "track_id": 7, "box": (0.1, 0.2, 0.3, 0.4), "confidence": 0.9},
        "started_at": T0,
        "observed_at": T0 + timedelta(seconds=42),
        "attributes": {"dwell_s": 42.0},
        "snapshot": {"sha256": "ab" * 32, "width": 640, "height": 480},
    }
    fields.update(overrides)
    return Event.model_validate(fields)


def event_dict(**overrides: Any) -> dict[str, Any]:
    """A model-produced JSON object, then edited the way a faulty publisher would."""
    doc = make_event().to_dict()
    doc.update(overrides)
    return doc


# -- topics -----------------------------------------------------------------------------------------


def test_events_topic_round_trip() -> None:
    topic = topics.events_topic("site-1", "node_A.2", "cam-03")
    assert topic == "gridwatch/v1/site-1/node_A.2/cam-03/events"
    parsed = topics.parse_events_topic(topic)
    assert (parsed.site_id, parsed.node_id, parsed.camera_id) == ("site-1", "node_A.2", "cam-03")


def test_status_topics() -> None:
    assert topics.node_status_topic("s", "n") == "gridwatch/v1/s/n/status"
    assert topics.camera_status_topic("s", "n", "c") == "gridwatch/v1/s/n/c/status"


def test_64_char_id_is_the_longest_accepted() -> None:
    assert topics.check_id("site_id", "a" * 64) == "a" * 64


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#b", "+", "#", "a b", "", "a" * 65, "-lead", ".hidden"])
def test_unsafe_ids_rejected_by_every_builder(bad: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.check_id("site_id", bad)
    with pytest.raises(topics.TopicError):
        topics.events_topic(bad, "node-1", "cam-1")
    with pytest.raises(topics.TopicError):
        topics.camera_status_topic("site-1", "node-1", bad)
    with pytest.raises(topics.TopicError):
        topics.node_status_topic("site-1", bad)


@pytest.mark.parametrize("topic", [
    "gridwatch/v1/s/n/c/status",          # not an events topic
    "gridwatch/v2/s/n/c/events",          # other version
    "gridwatch/v1/s/n/events",            # too short
    "gridwatch/v1/s/n/c/x/events",        # too long
    "gridwatch/v1/s/n/c d/events",        # bad id inside
    "gridwatch/v1/s//c/events",           # empty id
])
def test_parse_events_topic_rejects(topic: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse_events_topic(topic)


def test_subscriptions_match_built_topics() -> None:
    """The wildcard filters the server subscribes with cover exactly the topics the edge builds."""

    def matches(topic: str, pattern: str) -> bool:
        t, p = topic.split("/"), pattern.split("/")
        return len(t) == len(p) and all(b in ("+", a) for a, b in zip(t, p, strict=True))

    assert matches(topics.events_topic("s", "n", "c"), topics.EVENTS_SUBSCRIPTION)
    assert not matches(topics.camera_status_topic("s", "n", "c"), topics.EVENTS_SUBSCRIPTION)
    node, camera = topics.STATUS_SUBSCRIPTIONS
    assert matches(topics.node_status_topic("s", "n"), node)
    assert matches(topics.camera_status_topic("s", "n", "c"), camera)


# -- event validation ---------------------------------------------------------------------------------


def test_good_event_round_trips() -> None:
    event = make_event()
    again = parse_event(event.to_json())
    assert again == event
    assert again.object is not None and again.object.class_name == "person"
    raw = json.loads(event.to_json())
    assert raw["schema"] == "gridwatch.event/1"
    assert raw["object"]["class"] == "person"  # the wire name, not the Python one
    assert parse_event(event.to_json().encode()) == event  # MQTT hands us bytes


def test_event_ids_are_generated_and_unique() -> None:
    assert make_event().event_id != make_event().event_id


@pytest.mark.parametrize("missing", ["incident_id", "type", "phase", "site_id", "camera_id", "started_at"])
def test_missing_field_rejected(missing: str) -> None:
    doc = event_dict()
    del doc[missing]
    with pytest.raises(ValidationError, match=missing):
        parse_event(json.dumps(doc))


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        parse_event(json.dumps(event_dict(observed_at="2025-05-01T08:30:42")))
    with pytest.raises(ValidationError):
        make_event(started_at=datetime(2025, 5, 1, 8, 30))  # naive on purpose


@pytest.mark.parametrize("box", [(0.1, 0.2, 1.2, 0.4), (-0.1, 0.2, 0.3, 0.4), (0.1, 0.2, 0.3)])
def test_box_outside_unit_square_rejected(box: tuple[float, ...]) -> None:
    obj = {"class": "person", "track_id": 1, "box": list(box), "confidence": 0.5}
    with pytest.raises(ValidationError):
        parse_event(json.dumps(event_dict(object=obj)))


def test_unknown_type_rejected() -> None:
    with pytest.raises(ValidationError, match="type"):
        parse_event(json.dumps(event_dict(type="alien_landing")))


def test_unknown_extra_key_rejected() -> None:
    with pytest.raises(ValidationError, match="colour"):
        parse_event(json.dumps(event_dict(colour="red")))
    obj = {"class": "person", "track_id": 1, "box": [0, 0, 1, 1], "confidence": 0.5, "mask": []}
    with pytest.raises(ValidationError, match="mask"):
        parse_event(json.dumps(event_dict(object=obj)))


def test_unsafe_id_in_payload_rejected() -> None:
    """A payload id must be usable as a topic segment, like the ids in the topic itself."""
    with pytest.raises(ValidationError, match="camera_id"):
        parse_event(json.dumps(event_dict(camera_id="cam/1")))


def test_garbage_payload_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_event(b"\xff not json")


# -- JSON Schemas -------------------------------------------------------------------------------------


def test_committed_schemas_match_models() -> None:
    """A model change without `gridwatch broker schemas` fails here."""
    docs = schema_documents()
    committed = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert committed == set(docs), "broker/schemas/ has missing or stale files"
    for name, doc in docs.items():
        on_disk = (SCHEMA_DIR / name).read_text(encoding="utf-8")
        assert on_disk == render(doc), f"broker/schemas/{name} is out of date: run `gridwatch broker schemas`"


def committed_validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_model_event_validates_against_committed_schema() -> None:
    validator = committed_validator("event.v1.json")
    validator.validate(json.loads(make_event().to_json()))
    validator.validate(json.loads(make_event(object=None, snapshot=None, attributes={}).to_json()))


@pytest.mark.parametrize("bad", [
    {"type": "alien_landing"},
    {"colour": "red"},
    {"site_id": "site/1"},
    {"incident_id": "not-hex"},
    {"object": {"class": "person", "track_id": 1, "box": [0.1, 0.2, 1.5, 0.4], "confidence": 0.5}},
    {"schema": "gridwatch.event/2"},
])
def test_bad_event_fails_committed_schema_and_model(bad: dict[str, Any]) -> None:
    """Integrators validating with the schema reject what the server rejects."""
    doc = event_dict(**bad)
    assert list(committed_validator("event.v1.json").iter_errors(doc)), f"schema accepted {bad}"
    with pytest.raises(ValidationError):
        parse_event(json.dumps(doc))


def test_missing_field_fails_committed_schema() -> None:
    doc = event_dict()
    del doc["incident_id"]
    assert not committed_validator("event.v1.json").is_valid(doc)


def test_node_status_validates_against_committed_schema() -> None:
    status = NodeStatus(site_id="site-1", node_id="node-1", state=NodeState.OFFLINE, at=T0)
    validator = committed_validator("node-status.v1.json")
    validator.validate(json.loads(status.to_json()))
    assert not validator.is_valid({**json.loads(status.to_json()), "state": "asleep"})



# -- camera configs (console -> edge) ------------------------------------------------------------------

LOBBY = {"id": "lobby", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0]],
         "rules": [{"type": "loitering", "min_dwell_s": 30}]}


def config_dict(**overrides: Any) -> dict[str, Any]:
    doc = CameraConfig(site_id="site-1", node_id="node-1", camera_id="cam-1", version=2, zones=[LOBBY]).to_dict()
    doc.update(overrides)
    return doc


def test_camera_config_topic_round_trip_and_node_filter() -> None:
    topic = topics.camera_config_topic("site-1", "node-1", "cam-1")
    assert topic == "gridwatch/v1/site-1/node-1/cam-1/config"
    parsed = topics.parse_camera_config_topic(topic)
    assert (parsed.site_id, parsed.node_id, parsed.camera_id) == ("site-1", "node-1", "cam-1")
    assert topics.node_configs_filter("site-1", "node-1") == "gridwatch/v1/site-1/node-1/+/config"
    with pytest.raises(topics.TopicError):
        topics.parse_camera_config_topic(topics.camera_status_topic("site-1", "node-1", "cam-1"))
    with pytest.raises(topics.TopicError):
        topics.camera_config_topic("site-1", "node-1", "cam/1")
    with pytest.raises(topics.TopicError):
        topics.node_configs_filter("site-1", "+")


def test_camera_config_validates_against_committed_schema() -> None:
    validator = committed_validator("camera-config.v1.json")
    validator.validate(config_dict())
    assert CameraConfig.model_validate(config_dict()).zones[0].rules[0].min_dwell_s == 30


@pytest.mark.parametrize(("bad", "field"), [
    ({"version": 0}, "version"),
    ({"camera_id": "cam/1"}, "camera_id"),
    ({"zones": [{**LOBBY, "polygon": [[0.1, 0.5], [0.9, 0.5]]}]}, "polygon"),
    ({"zones": [{**LOBBY, "rules": [{"type": "teleport"}]}]}, "rules"),
    ({"schema": "gridwatch.camera-config/2"}, "schema"),
])
def test_bad_camera_config_fails_committed_schema_and_model(bad: dict[str, Any], field: str) -> None:
    doc = config_dict(**bad)
    assert list(committed_validator("camera-config.v1.json").iter_errors(doc)), f"schema accepted {bad}"
    with pytest.raises(ValidationError, match=field):
        CameraConfig.model_validate_json(json.dumps(doc))


def test_camera_config_zone_ids_unique() -> None:
    with pytest.raises(ValidationError, match="zone ids must be unique"):
        CameraConfig.model_validate(config_dict(zones=[LOBBY, LOBBY]))


def test_uniform_examples_topic_round_trip_and_site_filter() -> None:
    topic = topics.uniform_examples_topic("site-1", "meituan")
    assert topic == "gridwatch/v1/site-1/_uniforms/meituan/examples"
    assert topics.parse_uniform_examples_topic(topic) == ("site-1", "meituan")
    assert topics.site_uniform_examples_filter("site-1") == "gridwatch/v1/site-1/_uniforms/+/examples"
    with pytest.raises(topics.TopicError):
        topics.uniform_examples_topic("site-1", "a/b")
    with pytest.raises(topics.TopicError):
        topics.parse_uniform_examples_topic(topics.camera_config_topic("site-1", "n", "c"))
