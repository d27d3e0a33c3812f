"""False alarms (误报) on real parts: events over Mosquitto into SQLite and PostgreSQL, people marking
the tickets through the REST API, and the weekly false-alarm rate per camera, zone and rule computed
from those outcomes (local weeks: a ticket opened at 00:30 on a Monday in Shanghai is that week's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridwatch.broker.contract import EventType, Phase
from gridwatch.server.clock import ManualClock
from tests import test_tickets_engine as engine
from tests.auth_helpers import login
from tests.test_server_mqtt import wait_for
from tests.test_tickets_engine import FIRE_DEPT, SUPERVISOR, Api, Edge, new_id

pytestmark = pytest.mark.mosquitto

# The ticket engine's fixtures: a server on each database with the sample registry, an edge, a manual clock.
api, edge, clock = engine.api, engine.edge, engine.clock
GUARD = {"actor": "p-sec-1", "role": "security"}
WORKER = {"actor": "p-li", "role": "grid_worker"}  # a worker of the lobby's grid


def ticket_of(api: Api, incident: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        found[:] = [t for t in api.get("/api/tickets", limit=200)["items"] if t["incident_id"] == incident]
        return bool(found)

    wait_for(arrived, f"the ticket of incident {incident}")
    return found[0]


def loitering(api: Api, edge: Edge, zone: str, track: int) -> dict[str, Any]:
    """A daytime loitering ticket in ``zone`` of the lobby camera: reported, waiting for a person."""
    event = edge.send("lobby-cam", EventType.LOITERING, Phase.START, new_id(), zone=zone, track=track)
    return ticket_of(api, event.incident_id)


def mark(api: Api, ticket: dict[str, Any], who: dict[str, Any], code: str, expect: int = 200,
         **fields: Any) -> Any:
    return api.act(ticket["id"], "mark_false_alarm", who, expect=expect, false_alarm_reason=code, **fields)


def test_marked_false_alarms_become_weekly_rates_per_camera_zone_and_rule(api: Api, edge: Edge,
                                                                          clock: ManualClock) -> None:
    # Monday 3 March 2025, 10:00 in Shanghai: four loitering tickets in the lobby, three at the table.
    first, second, third = (loitering(api, edge, "table", track) for track in (1, 2, 3))
    door = loitering(api, edge, "door", 4)
    assert first["stage"] == "reported" and first["false_alarm_reason"] is None

    offered = {a["action"]: a for a in api.as_person(GUARD).get(f"/api/tickets/{first['id']}/actions").json()}
    assert offered["mark_false_alarm"]["choices"]["false_alarm_reason"][:2] == ["nothing_there", "misrecognised"]
    marked = mark(api, first, GUARD, "misrecognised", reason="保洁员")  # the guard on the night shift
    assert marked["ticket"]["stage"] == "voided"  # nobody had registered it: marking voids it
    assert marked["ticket"]["false_alarm_reason"] == "misrecognised"
    [entry] = [e for e in api.get(f"/api/tickets/{first['id']}/transitions") if e["action"] == "mark_false_alarm"]
    assert (entry["actor"], entry["from_stage"], entry["to_stage"]) == ("p-sec-1", "reported", "voided")
    assert entry["details"] == {"false_alarm_reason": "misrecognised", "reason": "保洁员"}

    again = mark(api, first, SUPERVISOR, "nothing_there", expect=409)
    assert again["error"]["code"] == "already_false_alarm"
    assert mark(api, second, WORKER, "nothing_there", expect=403)["error"]["code"] == "role_not_allowed"
    assert mark(api, second, SUPERVISOR, "other", expect=422)["error"]["code"] == "missing_field"
    unknown = api.as_person(SUPERVISOR).post(f"/api/tickets/{second['id']}/transitions",
                                             json={"action": "mark_false_alarm", "false_alarm_reason": "bad luck"})
    assert unknown.status_code == 422 and "false_alarm_reason" in unknown.text
    mark(api, second, SUPERVISOR, "other", reason="演练")

    # A fire lane on the east lane, held long enough to register: marked only once its outcome is known.
    lane_event = edge.send("lane-east-cam", EventType.FIRE_LANE_BLOCKED, Phase.START, new_id())
    lane = ticket_of(api, lane_event.incident_id)
    wait_for(lambda: api.ticket(lane["id"])["stage"] == "registered", "the fire lane's registration")
    assert mark(api, lane, SUPERVISOR, "authorised", expect=409)["error"]["code"] == "wrong_stage"
    api.act(lane["id"], "dispatch", SUPERVISOR, assignee_kind="department", assignee_id="dept-fire-safety")
    api.act(lane["id"], "accept", FIRE_DEPT)
    api.act(lane["id"], "feedback", FIRE_DEPT, result="消防车辆演练")
    edge.send("lane-east-cam", EventType.FIRE_LANE_BLOCKED, Phase.END, lane_event.incident_id)
    wait_for(lambda: api.ticket(lane["id"])["stage"] == "verified", "auto-verification")
    api.act(lane["id"], "close", SUPERVISOR)
    closed = mark(api, lane, SUPERVISOR, "authorised")["ticket"]
    assert (closed["stage"], closed["false_alarm_reason"]) == ("closed", "authorised")  # the outcome stays

    # 00:30 on Monday 10 March in Shanghai (still Sunday in UTC): the next local week.
    clock.advance(datetime(2025, 3, 9, 16, 30, 30, tzinfo=UTC) - clock.now())
    api.close()  # a week later every console session has expired: log in again
    api.http = login(api.runner.url, "admin")
    api.people = {actor: login(api.runner.url, actor) for actor in api.people}
    west_event = edge.send("lane-west-cam", EventType.FIRE_LANE_BLOCKED, Phase.START, new_id(), dwell=30)
    west = ticket_of(api, west_event.incident_id)
    mark(api, west, GUARD, "camera_fault")

    by_camera = api.get("/api/indicators/false-alarms", by="camera")
    assert [(r["week"], r["group"], r["tickets"], r["false_alarms"], r["false_alarm_rate"]) for r in by_camera] == [
        ("2025-03-03", "lane-east-cam", 1, 1, 1.0), ("2025-03-03", "lobby-cam", 4, 2, 0.5),
        ("2025-03-10", "lane-west-cam", 1, 1, 1.0)]
    assert by_camera[1]["reasons"] == {"misrecognised": 1, "other": 1}
    by_zone = api.get("/api/indicators/false-alarms", by="zone", until="2025-03-05T00:00:00Z")
    assert [(r["group"], r["tickets"], r["false_alarms"], r["false_alarm_rate"]) for r in by_zone] == [
        ("lane-east-cam/lane", 1, 1, 1.0), ("lobby-cam/door", 1, 0, 0.0), ("lobby-cam/table", 3, 2, 0.6667)]
    by_rule = api.get("/api/indicators/false-alarms", by="rule", since="2025-03-09T00:00:00Z")
    assert [(r["week"], r["group"], r["false_alarm_rate"]) for r in by_rule] == [
        ("2025-03-10", "fire_lane_blocked", 1.0)]
    assert door["false_alarm_reason"] is None and third["stage"] == "reported"
    refused = api.http.get("/api/indicators/false-alarms", params={"by": "street"})
    assert refused.status_code == 422 and "by" in refused.text
    assert mark(api, third, SUPERVISOR, "nothing_there")["ticket"]["stage"] == "voided"
    assert api.get("/api/indicators/false-alarms", by="zone", until="2025-03-05T00:00:00Z")[2]["false_alarms"] == 3
