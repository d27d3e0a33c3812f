"""Issue 23, privacy: plate numbers live on fire-lane tickets only and retention takes them away.

On SQLite and PostgreSQL, with events ingested the way MQTT delivers them: a plate on any other event
type is refused (dead letter); a fire-lane ticket closed longer ago than ``retention_plates_days``
loses its plate, the plate in its events and the plate crop, while the ticket itself, and a recent
ticket's plate, stay.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gridwatch.broker.contract import EventType, PlateReading
from gridwatch.server.clock import ManualClock
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.snapshots import SnapshotStore
from gridwatch.server.ingest.store import IngestContext, store_message
from gridwatch.server.models import DeadLetter, EventRecord, Ticket
from gridwatch.server.privacy.retention import Policy, purge
from gridwatch.server.settings import ServerSettings
from tests.test_integrations_retention import _close, _snapshot
from tests.test_server_ingest import TOPIC, make_event

NOW = datetime.now(UTC)
MONTHS_AGO = NOW - timedelta(days=60)  # past the plates' 30 days, within the events' 365


def _fire_lane(session, at: datetime, plate: str, crop: str) -> int:
    event = make_event(incident_id=uuid.uuid4().hex, type=EventType.FIRE_LANE_BLOCKED, zone_id="lane",
                       started_at=at, observed_at=at, attributes={"stationary_s": 600.0},
                       plate=PlateReading(status="read", text=plate, colour="blue", confidence=0.97, frames=3,
                                          crop_sha256=crop))
    outcome = store_message(session, TOPIC, event.to_json(), context=IngestContext(clock=ManualClock(at)))
    assert outcome.ticket_id is not None
    return outcome.ticket_id


def test_a_plate_only_rides_on_fire_lane_events(database_url: str) -> None:
    upgrade(database_url)
    sessions = session_factory(create_engine(database_url))
    loitering = make_event().to_dict() | {"plate": {"status": "read", "text": "京AD12345", "frames": 3}}
    with sessions() as session:
        store_message(session, TOPIC, json.dumps(loitering).encode(), context=IngestContext(clock=ManualClock(NOW)))
        reasons = list(session.scalars(sa.select(DeadLetter.reason)))
        assert len(reasons) == 1 and "only fire_lane_blocked events carry a plate" in reasons[0]
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0


def test_retention_takes_the_plate_and_leaves_the_ticket(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    sessions = session_factory(create_engine(database_url))
    store = SnapshotStore(tmp_path / "snapshots")
    old_crop, new_crop = _snapshot(store, (40, 90, 200), NOW), _snapshot(store, (41, 91, 201), NOW)
    with sessions() as session:
        old = _fire_lane(session, MONTHS_AGO, "苏E7K352", old_crop)
        _close(session, old, MONTHS_AGO)  # closed before the next incident, which would otherwise join it
        new = _fire_lane(session, NOW, "京AD12345", new_crop)
        _close(session, new, NOW - timedelta(days=1))
        assert new != old
    policy = Policy.from_settings(ServerSettings(data_dir=tmp_path))
    with sessions() as session:
        assert purge(session, store, policy, NOW, dry_run=True)["plates"] == 1
        assert session.get(Ticket, old).plate is not None, "a dry run changes nothing"
        assert purge(session, store, policy, NOW)["plates"] == 1
    with sessions() as session:
        assert session.get(Ticket, old).plate is None and session.get(Ticket, old).stage == "closed"
        assert session.get(Ticket, new).plate["text"] == "京AD12345"
        old_events = list(session.scalars(sa.select(EventRecord.payload).where(EventRecord.ticket_id == old)))
        assert old_events and all("plate" not in payload for payload in old_events)
    assert store.find(old_crop) is None and store.find(new_crop) is not None
    with sessions() as session:
        assert purge(session, store, policy, NOW)["plates"] == 0
