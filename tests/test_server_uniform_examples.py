"""Uniform examples over REST (issue 15, item 4): a supervisor adds an event's person crop as a
positive or negative example of a uniform, the server stores it in PostgreSQL and publishes the
uniform's examples retained for the site's edge nodes. Real server, real Mosquitto, real database.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from PIL import Image

from gridwatch.broker import topics
from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase, SnapshotRef, UniformExamples
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import PASSWORD, add_account, login
from tests.conftest import Mosquitto, _fresh_postgres_database
from tests.test_console_browser import Subscriber
from tests.test_server_mqtt import Publisher

SITE, NODE, CAMERA = "site-u", "gate-1", "gate-cam"


def upload(base_url: str, colour: tuple[int, int, int], size: tuple[int, int]) -> SnapshotRef:
    """A JPEG put by its hash, as an edge node uploads a snapshot or a crop."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    data = out.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    assert httpx.put(f"{base_url}/api/snapshots/{sha}", content=data).status_code in (200, 201)
    return SnapshotRef(sha256=sha, width=size[0], height=size[1])


def courier_event(base_url: str, colour: tuple[int, int, int], with_crop: bool = True) -> Event:
    """A courier_entry event whose attributes carry the person crop, as the edge pipeline sends it."""
    at = datetime.now(UTC)
    attributes: dict[str, Any] = {"uniform_id": "meituan", "score": 0.8}
    if with_crop:
        attributes["crop_sha256"] = upload(base_url, colour, (60, 140)).sha256
    return Event(type=EventType.COURIER_ENTRY, phase=Phase.START, incident_id=uuid.uuid4().hex, site_id=SITE,
                 node_id=NODE, camera_id=CAMERA, zone_id="gate", started_at=at - timedelta(seconds=2), observed_at=at,
                 attributes=attributes, snapshot=upload(base_url, (90, 90, 90), (320, 180)),
                 object=DetectedObject.model_validate({"class": "person", "track_id": 1, "box": (0.4, 0.2, 0.6, 0.9),
                                                       "confidence": 0.9}))


@pytest.fixture
def server(tmp_path, mosquitto: Mosquitto) -> Iterator[ServerRunner]:
    url, drop = _fresh_postgres_database()
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=url, mqtt_url=mosquitto.url, port=0,
                              admin_password=PASSWORD, mqtt_client_id=f"gw-uniforms-{uuid.uuid4().hex[:8]}")
    runner = ServerRunner(settings)
    runner.start()
    try:
        add_account(runner, "chen", "supervisor", "p-chen")
        add_account(runner, "guard", "security", "p-sec-1")
        deadline = time.monotonic() + 10
        while not httpx.get(f"{runner.url}/api/health").json()["mqtt"]["subscribed"]:
            assert time.monotonic() < deadline, "the server did not subscribe"
            time.sleep(0.05)
        yield runner
    finally:
        runner.stop()
        drop()


def ingested(client: httpx.Client, event: Event) -> None:
    deadline = time.monotonic() + 10
    while client.get(f"/api/events/{event.event_id}").status_code != 200:
        assert time.monotonic() < deadline, f"event {event.event_id} was not ingested"
        time.sleep(0.05)


def test_a_supervisor_adds_examples_from_events_and_the_site_gets_them_retained(server: ServerRunner) -> None:
    publisher = Publisher(server.settings.mqtt_url)
    chen, guard = login(server.url, "chen"), login(server.url, "guard")
    try:
        resident, courier, blank = (courier_event(server.url, (200, 30, 30)), courier_event(server.url, (250, 200, 0)),
                                    courier_event(server.url, (0, 0, 0), with_crop=False))
        for event in (resident, courier, blank):
            publisher.publish(topics.events_topic(SITE, NODE, CAMERA), event.to_json())
            ingested(chen, event)
        path = f"/api/events/{resident.event_id}/uniform-examples"

        refused = guard.post(path, json={"uniform_id": "meituan", "label": "negative"})
        assert refused.status_code == 403, refused.text  # security may look, not teach the edge
        no_csrf = httpx.post(f"{server.url}{path}", json={"uniform_id": "meituan", "label": "negative"},
                             cookies=chen.cookies)
        assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.text

        added = chen.post(path, json={"uniform_id": "meituan", "label": "negative"})
        assert added.status_code == 201, added.text
        example = added.json()
        assert example["crop_sha256"] == resident.attributes["crop_sha256"] and example["label"] == "negative"
        assert example["added_by"] == "p-chen" and example["site_id"] == SITE and example["published"] is True
        assert example["topic"] == topics.uniform_examples_topic(SITE, "meituan")

        assert chen.post(path, json={"uniform_id": "meituan", "label": "positive"}).status_code == 409
        assert chen.post(f"/api/events/{blank.event_id}/uniform-examples",
                         json={"uniform_id": "meituan", "label": "positive"}).status_code == 422
        assert chen.post(f"/api/events/{uuid.uuid4().hex}/uniform-examples",
                         json={"uniform_id": "meituan", "label": "positive"}).status_code == 404
        assert chen.post(path, json={"uniform_id": "no/slash", "label": "positive"}).status_code == 422
        assert chen.post(path, json={"uniform_id": "meituan", "label": "maybe"}).status_code == 422
        assert chen.post(f"/api/events/{courier.event_id}/uniform-examples",
                         json={"uniform_id": "meituan", "label": "positive"}).status_code == 201

        listed = chen.get("/api/uniforms/meituan/examples").json()
        assert [(e["label"], e["event_id"]) for e in listed] == [("negative", resident.event_id),
                                                                 ("positive", courier.event_id)]
        assert chen.get("/api/uniforms/meituan/examples", params={"site_id": "elsewhere"}).json() == []
        assert "meituan" in chen.get("/api/uniforms").json()
        assert guard.get("/api/uniforms/meituan/examples").status_code == 403

        # What a node of the site gets on subscribing, however late: the whole list, versioned.
        retained = Subscriber(server.settings.mqtt_url, topics.site_uniform_examples_filter(SITE)).until(
            lambda messages: len(messages[-1]["examples"]) >= 2)[-1]
        message = UniformExamples.model_validate(retained)
        assert message.uniform_id == "meituan" and message.version == listed[-1]["id"]
        assert [(e.label, e.crop_sha256) for e in message.examples] == [
            ("negative", resident.attributes["crop_sha256"]), ("positive", courier.attributes["crop_sha256"])]
        crop = chen.get(message.examples[0].url)
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    finally:
        publisher.close()
        chen.close()
        guard.close()
