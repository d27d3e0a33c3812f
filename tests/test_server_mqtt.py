"""The server against a real Mosquitto, on SQLite and PostgreSQL: events in, tickets out over REST.

Covers the founding issue's acceptance: one published event makes exactly one ticket; publishing
it again changes nothing; a malformed payload shows up as a dead letter with its reason. Also:
events published while the server is down arrive when it returns (persistent QoS 1 session), and
ingest resumes by itself after a broker restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, EventType, Phase
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import PASSWORD, login

pytestmark = pytest.mark.mosquitto

SITE, NODE, CAMERA = "site-a", "node-1", "cam-lane"
TOPIC = topics.events_topic(SITE, NODE, CAMERA)
DEADLINE_S = 15.0


def make_event(phase: Phase = Phase.START, incident_id: str | None = None, seconds: float = 0) -> Event:
    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    return Event(
        incident_id=incident_id or uuid.uuid4().hex,
        type=EventType.FIRE_LANE_BLOCKED,
        phase=phase,
        site_id=SITE,
        node_id=NODE,
        camera_id=CAMERA,
        zone_id="lane-north",
        started_at=t0,
        observed_at=t0 + timedelta(seconds=seconds),
        attributes={"dwell_s": 120.0 + seconds},
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll until ``check()`` is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Publisher:
    """A plain paho client, as an edge box or an integrator would publish."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(DEADLINE_S)
        assert info.is_published(), "the broker did not acknowledge the publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Server:
    """A ServerRunner plus a small REST client; restartable on the same database and client id."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.runner: ServerRunner | None = None
        self.http: httpx.Client | None = None

    def start(self) -> None:
        self.runner = ServerRunner(self.settings)
        self.runner.start()
        self.http = login(self.runner.url, "admin")
        wait_for(lambda: self.health()["mqtt"]["subscribed"], "the server's MQTT subscription")

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.runner is not None:
            self.runner.stop()
        self.runner = self.http = None

    def get(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def health(self) -> dict[str, Any]:
        return self.get("/api/health")


@pytest.fixture
def server(mosquitto, database_url: str, tmp_path: Path) -> Iterator[Server]:
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        mqtt_url=mosquitto.url,
        mqtt_client_id=f"gridwatch-server-{uuid.uuid4().hex[:8]}",
        port=0,
        admin_password=PASSWORD,
    )
    srv = Server(settings)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def publisher(mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.url)
    yield pub
    pub.close()


def test_one_event_makes_one_ticket_and_a_redelivery_changes_nothing(
    server: Server, publisher: Publisher
) -> None:
    event = make_event()
    publisher.publish(TOPIC, event.to_json())

    tickets = wait_for(lambda: server.get("/api/tickets")["total"] == 1 and server.get("/api/tickets"),
                       "the ticket")
    [ticket] = tickets["items"]
    assert ticket["incident_id"] == event.incident_id
    assert ticket["type"] == "fire_lane_blocked"
    assert ticket["camera_id"] == CAMERA and ticket["zone_id"] == "lane-north"
    assert ticket["event_count"] == 1
    # Blocked for 120 s: the fire lane's registration condition (立案条件) is met, so the system registers it.
    assert ticket["stage"] == "registered"
    assert ticket["attributes"] == {"dwell_s": 120.0}
    detail = server.get(f"/api/tickets/{ticket['id']}")
    assert [e["event_id"] for e in detail["events"]] == [event.event_id]
    assert server.get(f"/api/events/{event.event_id}")["ticket_id"] == ticket["id"]

    # The same event again (an edge retry or a broker redelivery): counted, but nothing changes.
    publisher.publish(TOPIC, event.to_json())
    wait_for(lambda: server.health()["mqtt"]["duplicates"] == 1, "the duplicate to be processed")
    assert server.get("/api/tickets")["total"] == 1
    assert server.get("/api/events")["total"] == 1
    assert server.get(f"/api/tickets/{ticket['id']}")["event_count"] == 1

    # The rest of the incident attaches to the same ticket.
    publisher.publish(TOPIC, make_event(Phase.END, event.incident_id, seconds=30).to_json())
    ended = wait_for(lambda: (t := server.get(f"/api/tickets/{ticket['id']}"))["ended_at"] and t,
                     "the end event")
    assert ended["event_count"] == 2
    assert server.get("/api/tickets")["total"] == 1
    health = server.health()
    assert health["status"] == "ok"
    assert health["counts"] == {"events": 2, "tickets": 1, "dead_letters": 0}
    assert health["mqtt"]["stored"] == 2 and health["mqtt"]["errors"] == 0


def test_a_malformed_payload_becomes_a_dead_letter(server: Server, publisher: Publisher) -> None:
    publisher.publish(TOPIC, b'{"schema": "gridwatch.event/1", "type": "loitering"}')
    wrong_camera = topics.events_topic(SITE, NODE, "cam-elsewhere")
    publisher.publish(wrong_camera, make_event().to_json())

    letters = wait_for(lambda: (d := server.get("/api/dead-letters"))["total"] == 2 and d,
                       "two dead letters")
    newest, oldest = letters["items"]
    assert oldest["topic"] == TOPIC
    assert oldest["payload_text"] == '{"schema": "gridwatch.event/1", "type": "loitering"}'
    assert "incident_id" in oldest["reason"]  # names a missing field
    assert newest["topic"] == wrong_camera
    assert "camera_id" in newest["reason"] and "mismatch" in newest["reason"]
    assert server.get("/api/tickets")["total"] == 0
    assert server.health()["mqtt"]["dead_lettered"] == 2


def test_events_published_while_the_server_is_down_arrive_when_it_returns(
    server: Server, publisher: Publisher
) -> None:
    first = make_event()
    publisher.publish(TOPIC, first.to_json())
    wait_for(lambda: server.get("/api/tickets")["total"] == 1, "the first ticket")

    server.stop()
    later = make_event()
    publisher.publish(TOPIC, later.to_json())  # queued by the broker for the server's session
    server.start()

    events = wait_for(lambda: (d := server.get("/api/events"))["total"] == 2 and d, "the queued event")
    assert {e["incident_id"] for e in events["items"]} == {first.incident_id, later.incident_id}
    # The same lane blocked again while its ticket is open: correlation adds it to that ticket.
    [ticket] = server.get("/api/tickets")["items"]
    assert ticket["incident_id"] == first.incident_id and ticket["incident_count"] == 2


def test_ingest_resumes_after_a_broker_restart(server: Server, mosquitto) -> None:
    mosquitto.stop()
    wait_for(lambda: not server.health()["mqtt"]["connected"], "the server to notice the broker left")
    assert server.health()["status"] == "degraded"
    mosquitto.start()
    wait_for(lambda: server.health()["mqtt"]["subscribed"], "the server to reconnect")

    publisher = Publisher(mosquitto.url)
    try:
        event = make_event()
        publisher.publish(TOPIC, event.to_json())
        tickets = wait_for(lambda: (d := server.get("/api/tickets"))["total"] == 1 and d, "the ticket")
    finally:
        publisher.close()
    assert tickets["items"][0]["incident_id"] == event.incident_id


def test_a_message_is_acknowledged_only_after_its_commit(mosquitto, database_url: str,
                                                         publisher: Publisher) -> None:
    """While the database cannot store it, the event stays unacknowledged at the broker; a later
    consumer with the same session receives it again and stores it."""
    from gridwatch.server.db import create_engine, session_factory, upgrade
    from gridwatch.server.ingest.mqtt_source import MqttIngest

    client_id = f"gridwatch-server-{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url)  # not migrated yet: every insert fails
    sessions = session_factory(engine)

    def consumer() -> MqttIngest:
        return MqttIngest(mqtt_url=mosquitto.url, client_id=client_id,
                          subscription=topics.EVENTS_SUBSCRIPTION, session_factory=sessions)

    broken = consumer()
    broken.start()
    try:
        assert broken.wait_subscribed(DEADLINE_S)
        event = make_event()
        publisher.publish(TOPIC, event.to_json())
        wait_for(lambda: broken.counts["errors"] >= 1, "the failed insert")
    finally:
        broken.stop()
    assert broken.counts["stored"] == 0

    upgrade(database_url)
    healthy = consumer()
    healthy.start()
    try:
        wait_for(lambda: healthy.counts["stored"] == 1, "the redelivered event to be stored")
    finally:
        healthy.stop()
        engine.dispose()
    assert healthy.counts["errors"] == 0
