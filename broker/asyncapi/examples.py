"""Example payloads for the AsyncAPI document, built as real contract models so they are valid by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gridwatch.broker.contract import (
    CameraConfig,
    CameraStatus,
    Event,
    EventType,
    GateAck,
    GateAckStatus,
    GateAction,
    GateCommand,
    NodeState,
    NodeStatus,
    Phase,
    TicketTransition,
    UniformExample,
    UniformExamples,
)

_T0 = datetime(2025, 5, 1, 8, 30, tzinfo=UTC)
_PLACE = {"site_id": "demo-compound", "node_id": "gate-north"}
_INCIDENT = "5f0c1a2b3c4d5e6f708192a3b4c5d6e7"


def examples() -> dict[str, list[tuple[str, str, Any]]]:
    """Payload key -> [(example name, summary, model instance)]."""
    started = Event(event_id="0c4f2a9e8b7d6c5b4a39281706f5e4d3", incident_id=_INCIDENT, type=EventType.LOITERING,
                    phase=Phase.START, camera_id="cam-1", zone_id="lobby",
                    object={"class": "person", "track_id": 7, "box": (0.41, 0.32, 0.52, 0.88), "confidence": 0.91},
                    started_at=_T0, observed_at=_T0 + timedelta(seconds=60), attributes={"dwell_s": 60.0},
                    snapshot={"sha256": "9f" * 32, "width": 1280, "height": 720}, **_PLACE)
    ended = started.model_copy(update={"event_id": "1d5e3b0f9c8e7d6c5b4a3928170a6f5e", "phase": Phase.END,
                                       "observed_at": _T0 + timedelta(seconds=95),
                                       "ended_at": _T0 + timedelta(seconds=95), "attributes": {"dwell_s": 95.0},
                                       "snapshot": None})
    return {
        "event": [("loiteringStart", "A person has stood in the lobby zone for a minute.", started),
                  ("loiteringEnd", "The same incident ends: the person left after 95 s.", ended)],
        "node-status": [("online", "The node connected.", NodeStatus(state=NodeState.ONLINE, at=_T0, **_PLACE)),
                        ("offline", "The node's last will, published by the broker when it vanishes.",
                         NodeStatus(state=NodeState.OFFLINE, at=_T0 + timedelta(hours=2), **_PLACE))],
        "camera-status": [("healthy", "A camera running at 5 detections per second.",
                           CameraStatus(camera_id="cam-1", state=NodeState.ONLINE, at=_T0, frames_in=90000,
                                        frames_detected=18000, inference_ms=38.5, fps_in=25.0, fps_processed=5.0,
                                        fps_detected=5.0, **_PLACE))],
        "ticket-transition": [("registered", "The loitering ticket is registered (立案) by the security desk.",
                               TicketTransition(transition_id=42, ticket_id=17, site_id="demo-compound",
                                                grid_id="grid-3", type=EventType.LOITERING, action="register",
                                                from_stage="reported", to_stage="registered", actor="desk-1",
                                                role="security", at=_T0 + timedelta(minutes=3), version=2))],
        "gate-command": [("openForCourier", "Open gate-north for a courier in an allowed uniform.",
                          GateCommand(command_id="7a6b5c4d3e2f10213243546576879809", command=GateAction.OPEN,
                                      gate_id="gate-north", event_id="0c4f2a9e8b7d6c5b4a39281706f5e4d3",
                                      reason="courier_entry meituan (score 0.93)", issued_at=_T0,
                                      expires_at=_T0 + timedelta(seconds=5)))],
        "gate-ack": [("opened", "The gate controller opened the gate.",
                      GateAck(command_id="7a6b5c4d3e2f10213243546576879809", gate_id="gate-north",
                              status=GateAckStatus.DONE, at=_T0 + timedelta(seconds=1)))],
        "camera-config": [("lobbyLoitering", "Version 3 of cam-1's zones: a lobby where a minute's dwell is loitering.",
                           CameraConfig(camera_id="cam-1", version=3, zones=[{
                               "id": "lobby", "name": "大堂 / Lobby",
                               "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]],
                               "rules": [{"type": "loitering", "min_dwell_s": 60, "update_every_s": 10}]}],
                               **_PLACE))],
        "uniform-examples": [("oneNegative", "A supervisor marked a resident in a red coat as not a meituan courier.",
                              UniformExamples(site_id="demo-compound", uniform_id="meituan", version=1, examples=[
                                  UniformExample(crop_sha256="ab" * 32, label="negative",
                                                 url=f"/api/snapshots/{'ab' * 32}",
                                                 event_id="0c4f2a9e8b7d6c5b4a39281706f5e4d3",
                                                 added_at=_T0 + timedelta(minutes=5))]))],
    }
