"""The ticket engine's acceptance on real parts: Mosquitto, SQLite and PostgreSQL, a manual clock.

1. a scripted day: dedup, grouping, recurrence, inhibition and silence, every lifecycle stage with
   return, claim, parking, extension and rework, the audit trail, and its MQTT publication; and the
   grouping window's group_wait holding a burst's ticket back from registration until it is in;
2. a 2-minute limit escalates grid → community → street and the indicators show the breach;
3. the fire lane's ``end`` verifies its ticket, and while a camera still reports it, nobody can;
5. two replicas on one shared subscription: no lost and no duplicate ticket.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import contract, topics
from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase
from gridwatch.server.clock import ManualClock
from gridwatch.server.registry import grids
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from gridwatch.server.tickets import categories
from tests.auth_helpers import PASSWORD, add_account, login
from tests.test_server_mqtt import Publisher, wait_for

pytestmark = pytest.mark.mosquitto

SITE, NODE = "demo-compound", "gate-north"
MONDAY_10H = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a working Monday
SUPERVISOR = {"actor": "p-chen", "role": "supervisor"}
FIRE_DEPT = {"actor": "p-fire-1", "role": "department", "unit": "dept-fire-safety"}


class Api:
    """``http`` is logged in as the admin; :meth:`act` acts as the person ``who`` names, logging in
    an account made for them on first use (the body never says who acts)."""

    def __init__(self, runner: ServerRunner) -> None:
        self.runner = runner
        self.http = login(runner.url, "admin")
        self.people: dict[str, httpx.Client] = {}

    def as_person(self, who: dict[str, Any]) -> httpx.Client:
        actor = who["actor"]
        if actor not in self.people:
            add_account(self.runner, actor, who["role"], unit=who.get("unit"))
            self.people[actor] = login(self.runner.url, actor)
        return self.people[actor]

    def close(self) -> None:
        for client in (self.http, *self.people.values()):
            client.close()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, ticket_id: int, action: str, who: dict[str, Any], expect: int = 200, **fields: Any) -> Any:
        response = self.as_person(who).post(f"/api/tickets/{ticket_id}/transitions", json={"action": action, **fields})
        assert response.status_code == expect, response.text
        return response.json()

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        return self.get(f"/api/tickets/{ticket_id}")

    def trail(self, ticket_id: int) -> list[str]:
        return [t["action"] for t in self.get(f"/api/tickets/{ticket_id}/transitions")]


class Edge:
    """Publishes incidents the way an edge box does, on the clock's time."""

    def __init__(self, publisher: Publisher, clock: ManualClock) -> None:
        self.publisher = publisher
        self.clock = clock

    def send(self, camera: str, kind: EventType, phase: Phase, incident: str, *, zone: str = "lane",
             dwell: float = 150.0, track: int = 1) -> Event:
        now = self.clock.now()
        event = Event(incident_id=incident, type=kind, phase=phase, site_id=SITE, node_id=NODE, camera_id=camera,
                      zone_id=zone, started_at=now - timedelta(seconds=dwell), observed_at=now,
                      ended_at=now if phase is Phase.END else None, attributes={"dwell_s": dwell},
                      object=DetectedObject(class_name="person", track_id=track, box=(0.1, 0.1, 0.2, 0.5),
                                            confidence=0.9))
        self.publisher.publish(topics.events_topic(SITE, NODE, camera), event.to_json())
        return event


class Listener:
    """An integrator subscribed to every ticket transition."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._ready.set()
        self.client.connect(host, int(port))
        self.client.subscribe(topics.TICKET_TRANSITIONS_SUBSCRIPTION, qos=1)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        payload = contract.TicketTransition.model_validate_json(message.payload)  # the published contract
        assert message.topic == topics.ticket_transitions_topic(payload.site_id, payload.ticket_id)
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def actions(self, ticket_id: int) -> list[str]:
        with self._lock:
            return [m["action"] for m in sorted(self.messages, key=lambda m: m["transition_id"])
                    if m["ticket_id"] == ticket_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def new_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY_10H)


def start_server(mosquitto, database_url: str, tmp_path: Path, clock: ManualClock, **overrides: Any) -> ServerRunner:
    settings = ServerSettings(data_dir=tmp_path / f"data-{uuid.uuid4().hex[:6]}", database_url=database_url,
                              mqtt_url=mosquitto.url, mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", port=0,
                              admin_password=PASSWORD, **overrides)
    runner = ServerRunner(settings, clock=clock)
    runner.start()
    wait_for(lambda: httpx.get(f"{runner.url}/api/health").json()["mqtt"]["subscribed"], "the subscription")
    return runner


@pytest.fixture
def api(mosquitto, database_url: str, tmp_path: Path, clock: ManualClock) -> Iterator[Api]:
    runner = start_server(mosquitto, database_url, tmp_path, clock, sla_sweep_interval_s=0.05)
    client = Api(runner)
    sample = grids.SAMPLE_PATH.read_text(encoding="utf-8")
    assert client.http.put("/api/registry", content=sample).status_code == 200
    yield client
    client.close()
    runner.stop()


@pytest.fixture
def edge(mosquitto, clock: ManualClock) -> Iterator[Edge]:
    publisher = Publisher(mosquitto.url)
    yield Edge(publisher, clock)
    publisher.close()


def wait_events(api: Api, total: int) -> None:
    wait_for(lambda: api.get("/api/events")["total"] == total, f"{total} stored events")


def test_a_scripted_day(api: Api, edge: Edge, mosquitto, clock: ManualClock) -> None:
    listener = Listener(mosquitto.url)
    try:
        _scripted_day(api, edge, clock, listener)
    finally:
        listener.close()


def _scripted_day(api: Api, edge: Edge, clock: ManualClock, listener: Listener) -> None:
    fire, loiter = EventType.FIRE_LANE_BLOCKED, EventType.LOITERING
    # 10:00 a fire lane is blocked for 150 s (立案条件 120 s): one ticket, registered by the system.
    a = new_id()
    edge.send("lane-east-cam", fire, Phase.START, a)
    edge.send("lane-east-cam", fire, Phase.UPDATE, a, dwell=160)
    wait_events(api, 2)
    [t1] = api.get("/api/tickets")["items"]
    assert (t1["stage"], t1["grid_id"], t1["street_id"]) == ("registered", "grid-xingfu-02", "street-east")
    assert (t1["category"], t1["subcategory"], t1["event_count"]) == ("街面秩序", "占用消防通道", 2)
    # Dedup: a new incident with the same fingerprint (camera, zone, type) joins the open ticket.
    a2 = new_id()
    clock.advance(timedelta(minutes=1))
    edge.send("lane-east-cam", fire, Phase.START, a2)
    # Grouping: the other camera of the same grid sees it within the group interval: same ticket.
    b = new_id()
    edge.send("lane-west-cam", fire, Phase.START, b)
    wait_events(api, 4)
    assert api.get("/api/tickets")["total"] == 1
    assert api.ticket(t1["id"])["incident_count"] == 3 and api.ticket(t1["id"])["open_incidents"] == 3
    # Inhibition: a tampered camera opens its own ticket and suppresses its other alerts.
    c = new_id()
    edge.send("gate-north-cam", EventType.CAMERA_TAMPER, Phase.START, c, zone="view", dwell=5)
    edge.send("gate-north-cam", loiter, Phase.START, new_id(), zone="gate")
    # Silence: loitering in the lobby is muted for an hour (a cleaning crew), with reason and author.
    zhang = api.as_person({"actor": "p-zhang", "role": "supervisor"})
    silence = zhang.post("/api/silences", json={"camera_id": "lobby-cam", "type": "loitering", "reason": "保洁作业",
                                                "ends_at": (clock.now() + timedelta(hours=1)).isoformat()})
    assert silence.status_code == 201, silence.text
    edge.send("lobby-cam", loiter, Phase.START, new_id(), zone="table")
    wait_events(api, 7)
    tickets = api.get("/api/tickets")["items"]
    assert sorted(t["type"] for t in tickets) == ["camera_tamper", "fire_lane_blocked"]
    suppressed = [e for e in api.get("/api/events", type="loitering")["items"]]
    assert len(suppressed) == 2 and all(e["ticket_id"] is None for e in suppressed)
    t2 = next(t for t in tickets if t["type"] == "camera_tamper")
    assert t2["stage"] == "registered" and t2["grid_id"] == "grid-xingfu-01"

    # T1 (fire lane): park and resume, dispatch to the fire-safety team, extension asked and approved.
    api.act(t1["id"], "park", SUPERVISOR, reason="等待物业确认车主")
    api.act(t1["id"], "unpark", SUPERVISOR)
    api.act(t1["id"], "dispatch", SUPERVISOR, assignee_kind="department", assignee_id="dept-fire-safety")
    api.act(t1["id"], "accept", {"actor": "p-sun", "role": "grid_worker"}, expect=403)  # not the assignee
    api.act(t1["id"], "accept", {"actor": "p-li", "role": "grid_worker"}, expect=404)  # another grid: unseen
    api.act(t1["id"], "accept", FIRE_DEPT)
    due = api.ticket(t1["id"])["due_at"]
    api.act(t1["id"], "request_extension", FIRE_DEPT, reason="车主出差", extension={"limit": 1, "type": "working_days"})
    approved = api.act(t1["id"], "approve_extension", SUPERVISOR)["ticket"]
    assert approved["due_at"] > due and approved["extension_count"] == 1
    api.act(t1["id"], "feedback", FIRE_DEPT, result="车辆已联系挪走")
    # The lane cameras still report it blocked: nobody can verify it (结案条件 camera_clear).
    refused = api.act(t1["id"], "verify", SUPERVISOR, expect=409)
    assert refused["error"]["code"] == "camera_not_clear"
    for incident, camera in ((a, "lane-east-cam"), (a2, "lane-east-cam"), (b, "lane-west-cam")):
        edge.send(camera, fire, Phase.END, incident, dwell=300)
    wait_for(lambda: api.ticket(t1["id"])["stage"] == "verified", "the cameras' end to verify the ticket")
    api.act(t1["id"], "close", SUPERVISOR)
    api.act(t1["id"], "evaluate", SUPERVISOR, rating=5)

    # T2 (tampered camera): dispatched, returned to sender, claimed (抢单), photo required, rework.
    api.act(t2["id"], "claim", {"actor": "p-sun", "role": "grid_worker"}, expect=404)  # another grid's worker
    api.act(t2["id"], "dispatch", SUPERVISOR, assignee_kind="worker", assignee_id="p-li")
    api.act(t2["id"], "return", {"actor": "p-li", "role": "grid_worker"}, reason="需要登高设备")
    api.act(t2["id"], "claim", {"actor": "p-wang", "role": "grid_worker"})
    wang = {"actor": "p-wang", "role": "grid_worker"}
    api.act(t2["id"], "accept", wang)
    api.act(t2["id"], "feedback", wang, expect=422, result="已调整")  # handler_photo needs the after-photo
    api.act(t2["id"], "feedback", wang, result="已调整", photo_sha256="ab" * 32)
    api.act(t2["id"], "reject", SUPERVISOR, reason="画面仍偏")  # 返工
    api.act(t2["id"], "feedback", wang, result="重新固定", photo_sha256="cd" * 32)
    api.act(t2["id"], "verify", SUPERVISOR)
    api.act(t2["id"], "close", SUPERVISOR)
    done = api.act(t2["id"], "evaluate", SUPERVISOR, rating=4)["ticket"]
    assert (done["stage"], done["rework_count"], done["rating"]) == ("evaluated", 1, 4)
    api.act(t2["id"], "close", SUPERVISOR, expect=409)  # no way back from evaluated

    # Recurrence: the lane is blocked again after closing: a new ticket linked to the old one.
    clock.advance(timedelta(hours=3))
    edge.send("lane-east-cam", fire, Phase.START, new_id())
    wait_for(lambda: api.get("/api/tickets")["total"] == 3, "the recurrence ticket")
    t3 = api.get("/api/tickets", type="fire_lane_blocked", stage="registered")["items"][0]
    assert t3["previous_ticket_id"] == t1["id"] and t3["id"] != t1["id"]

    expected_t1 = ["open", "register", "merge", "merge", "park", "unpark", "dispatch", "accept", "request_extension",
                   "approve_extension", "feedback", "verify", "close", "evaluate"]
    trail = api.get(f"/api/tickets/{t1['id']}/transitions")
    assert [t["action"] for t in trail] == expected_t1
    assert [t["version"] for t in trail if t["action"] not in ("open", "merge")] == list(range(2, 13))
    assert [(t["from_stage"], t["to_stage"]) for t in trail if t["action"] == "verify"] == [("feedback", "verified")]
    assert {t["actor"] for t in trail} == {"system", "p-chen", "p-fire-1"}
    assert all(t["at"] for t in trail)
    assert [t["details"].get("via") for t in trail if t["action"] == "merge"] == ["fingerprint", "group"]
    assert api.trail(t2["id"]) == ["open", "register", "dispatch", "return", "claim", "accept", "feedback", "reject",
                                   "feedback", "verify", "close", "evaluate"]
    # Integrators received the same trail over MQTT.
    wait_for(lambda: listener.actions(t1["id"]) == expected_t1, "the published transitions of the fire lane ticket")
    assert listener.actions(t2["id"]) == api.trail(t2["id"])


def test_group_wait_gathers_a_burst_before_registering(api: Api, edge: Edge, mosquitto, clock: ManualClock) -> None:
    """Clutter in the fire lanes (sample: group_wait_s 300): the ticket waits for the burst, then registers."""
    listener = Listener(mosquitto.url)
    try:
        clutter = EventType.FIRE_LANE_OBSTRUCTED
        assert categories.load_sample().for_type(clutter.value).group_wait_s == 300
        east, west = new_id(), new_id()
        edge.send("lane-east-cam", clutter, Phase.START, east, dwell=1900)  # 立案条件 (1800 s) met at once
        wait_events(api, 1)
        [ticket] = api.get("/api/tickets")["items"]
        assert ticket["stage"] == "reported"  # held: its group is gathering
        clock.advance(timedelta(minutes=2))
        edge.send("lane-west-cam", clutter, Phase.START, west, dwell=1900)  # the other lane camera of the grid
        clock.advance(timedelta(minutes=2))
        edge.send("lane-east-cam", clutter, Phase.UPDATE, east, dwell=2020)
        wait_events(api, 3)
        held = api.ticket(ticket["id"])
        assert (held["stage"], held["incident_count"], held["open_incidents"]) == ("reported", 2, 2)
        clock.advance(timedelta(seconds=61))  # 301 s after it opened: the wait is over
        edge.send("lane-west-cam", clutter, Phase.UPDATE, west, dwell=2140)
        wait_for(lambda: api.ticket(ticket["id"])["stage"] == "registered", "registration after the group wait")
        assert api.get("/api/tickets")["total"] == 1
        assert api.trail(ticket["id"]) == ["open", "merge", "register"]
        # Integrators hear of the registration once, with the whole burst already in the ticket.
        wait_for(lambda: listener.actions(ticket["id"]) == ["open", "merge", "register"], "the published trail")

        # A group whose every incident has ended has nothing left to wait for: decided at once.
        gate = new_id()
        edge.send("gate-north-cam", clutter, Phase.START, gate, zone="gate", dwell=1900)
        clock.advance(timedelta(seconds=10))
        edge.send("gate-north-cam", clutter, Phase.END, gate, zone="gate", dwell=1910)
        wait_events(api, 6)
        other = next(t for t in api.get("/api/tickets")["items"] if t["id"] != ticket["id"])
        assert other["grid_id"] == "grid-xingfu-01" and other["stage"] == "registered"
        assert api.trail(other["id"]) == ["open", "register"]
    finally:
        listener.close()


def test_a_two_minute_limit_escalates_up_the_levels(api: Api, edge: Edge, clock: ManualClock) -> None:
    table = categories.load_sample().model_dump(mode="json")
    fire = next(c for c in table["categories"] if c["event_type"] == "fire_lane_blocked")
    fire["time_limits"]["registered"] = {"limit": 2, "type": "urgent_minutes"}
    saved = api.http.put("/api/categories", content=yaml.safe_dump(table))
    assert saved.status_code == 200 and saved.json()["version"] == 1

    edge.send("lane-east-cam", EventType.FIRE_LANE_BLOCKED, Phase.START, new_id())
    wait_events(api, 1)
    [ticket] = api.get("/api/tickets")["items"]
    assert ticket["category_version"] == 1 and ticket["escalation_level"] == 0
    clock.advance(timedelta(seconds=61))  # the urgent policy warns at half the limit
    wait_for(lambda: "sla_warning" in api.trail(ticket["id"]), "the warning")
    clock.advance(timedelta(seconds=60))
    wait_for(lambda: api.ticket(ticket["id"])["escalation_level"] == 1, "escalation to the community")
    clock.advance(timedelta(minutes=2))
    wait_for(lambda: api.ticket(ticket["id"])["escalation_level"] == 2, "escalation to the street")
    notices = [t for t in api.get(f"/api/tickets/{ticket['id']}/transitions") if t["action"] == "escalate"]
    assert [(n["details"]["level"], n["details"]["unit"]) for n in notices] == [
        ("community", "comm-xingfu"), ("street", "street-east")]
    assert all(n["details"]["notice"] == "督办" for n in notices)

    [by_grid] = api.get("/api/indicators", by="grid")
    assert (by_grid["group"], by_grid["overdue"], by_grid["escalated"]) == ("grid-xingfu-02", 1, 1)
    for action, extra in (("dispatch", {"assignee_kind": "department", "assignee_id": "dept-fire-safety"}),):
        api.act(ticket["id"], action, SUPERVISOR, **extra)
    for action, extra in (("accept", {}), ("feedback", {"result": "已清理"})):
        api.act(ticket["id"], action, FIRE_DEPT, **extra)
    edge.send("lane-east-cam", EventType.FIRE_LANE_BLOCKED, Phase.END, api.ticket(ticket["id"])["incident_id"])
    wait_for(lambda: api.ticket(ticket["id"])["stage"] == "verified", "auto-verification")
    api.act(ticket["id"], "close", SUPERVISOR)
    [row] = api.get("/api/indicators", by="street")
    assert (row["group"], row["closed"], row["closing_rate"], row["on_time_rate"]) == ("street-east", 1, 1.0, 0.0)
    csv_text = api.http.get("/api/indicators.csv", params={"by": "street"}).text
    assert csv_text.splitlines()[0].startswith("group,period,tickets") and "street-east" in csv_text


def test_two_users_acting_at_once_one_wins(api: Api, edge: Edge) -> None:
    edge.send("lane-east-cam", EventType.FIRE_LANE_BLOCKED, Phase.START, new_id())
    wait_events(api, 1)
    [ticket] = api.get("/api/tickets")["items"]
    version = ticket["version"]
    first = api.act(ticket["id"], "claim", {"actor": "p-sun", "role": "grid_worker"}, expected_version=version)
    assert first["ticket"]["assignee_id"] == "p-sun"
    late = api.act(ticket["id"], "dispatch", SUPERVISOR, expect=409, expected_version=version,
                   assignee_kind="department", assignee_id="dept-fire-safety")
    assert late["error"]["code"] == "version_conflict"
    assert api.ticket(ticket["id"])["assignee_id"] == "p-sun"


@pytest.mark.postgres
def test_two_replicas_share_the_stream_without_loss_or_duplicates(mosquitto, tmp_path: Path,
                                                                  clock: ManualClock) -> None:
    from tests.conftest import _fresh_postgres_database

    url, drop = _fresh_postgres_database()
    replicas = [start_server(mosquitto, url, tmp_path, clock, shared_group="gridwatch") for _ in range(2)]
    publisher = Publisher(mosquitto.url)
    try:
        sent: list[Event] = []
        cameras = [f"cam-{n:02d}" for n in range(12)]
        edge = Edge(publisher, clock)
        for _ in range(4):  # four incidents per camera, each start, two updates, end; every message twice
            incidents = {camera: new_id() for camera in cameras}
            for phase in (Phase.START, Phase.UPDATE, Phase.UPDATE, Phase.END):
                for camera in cameras:
                    event = edge.send(camera, EventType.FIRE_LANE_BLOCKED, phase, incidents[camera])
                    publisher.publish(topics.events_topic(SITE, NODE, camera), event.to_json())
                    sent.append(event)
                clock.advance(timedelta(seconds=1))
        api = Api(replicas[0])
        wait_for(lambda: api.get("/api/events")["total"] == len(sent), "every event", timeout=60)
        healths = [httpx.get(f"{r.url}/api/health").json()["mqtt"] for r in replicas]
        # Both replicas took part. (Each message goes out twice, and the broker may hand every first copy
        # to one replica and every second to the other: which of them stores and which finds a duplicate
        # is a race, so "took part" counts both.)
        assert all(h["stored"] + h["duplicates"] > 0 for h in healths), healths
        assert sum(h["stored"] for h in healths) == len(sent)
        assert sum(h["duplicates"] for h in healths) == len(sent)
        tickets = api.get("/api/tickets", limit=100)["items"]
        assert sorted(t["camera_id"] for t in tickets) == cameras  # one ticket per lane, none twice
        assert all(t["incident_count"] == 4 and t["event_count"] == 16 for t in tickets)
    finally:
        publisher.close()
        for runner in replicas:
            runner.stop()
        drop()
