"""Privacy on SQLite and PostgreSQL. Retention: old data of every kind goes, new data and the
evidence of open tickets stay; ``gridwatch server purge --dry-run`` counts without deleting, and
the command and the server's purge function agree. The evidence access log: every snapshot view
is recorded with who, which ticket and from where."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.broker.contract import DetectedObject, SnapshotRef
from gridwatch.edge.evidence.clips import encode_mp4
from gridwatch.server.clock import ManualClock
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.clips import ClipStore
from gridwatch.server.ingest.snapshots import SnapshotStore
from gridwatch.server.ingest.store import IngestContext, store_message
from gridwatch.server.models import (
    DeadLetter,
    EventRecord,
    EvidenceAccess,
    Ticket,
    TicketTransition,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from gridwatch.server.privacy.retention import Policy, purge
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import add_account, login
from tests.test_server_api import image_bytes, ingest_via
from tests.test_server_api import make_event as api_event
from tests.test_server_ingest import TOPIC, make_event

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=1200)  # past every default limit (the longest, the audit trail, is 1095 days)


def _event(session: Session, at: datetime, track: int, snapshot: str | None = None) -> int:
    """A camera ticket from one real ingested start event, received at ``at``."""
    event = make_event(incident_id=uuid.uuid4().hex, started_at=at, observed_at=at,
                       object=DetectedObject(class_name="person", track_id=track, box=(0.1, 0.2, 0.3, 0.6),
                                             confidence=0.9),
                       snapshot=SnapshotRef(sha256=snapshot, width=32, height=18) if snapshot else None)
    outcome = store_message(session, TOPIC, event.to_json(), context=IngestContext(clock=ManualClock(at)))
    assert outcome.ticket_id is not None
    return outcome.ticket_id


def _close(session: Session, ticket_id: int, at: datetime) -> None:
    session.execute(sa.update(Ticket).where(Ticket.id == ticket_id).values(stage="closed", updated_at=at))
    session.commit()


def _snapshot(store: SnapshotStore, color: tuple[int, int, int], at: datetime) -> str:
    jpeg = image_bytes(color=color)
    sha = hashlib.sha256(jpeg).hexdigest()
    stored = store.put(sha, jpeg)
    os.utime(stored.path, (at.timestamp(), at.timestamp()))
    return sha


def _clip(store: SnapshotStore, session: Session, ticket_id: int, mp4: bytes, at: datetime) -> str:
    """The clip of the ticket's event, stored as an upload would, its file time ``at``."""
    event_id = session.scalar(sa.select(EventRecord.event_id).where(EventRecord.ticket_id == ticket_id))
    stored = ClipStore.beside(store).put(event_id, mp4, hashlib.sha256(mp4).hexdigest())
    os.utime(stored.path, (at.timestamp(), at.timestamp()))
    return event_id


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real H.264 MP4 of two frames, encoded the way the edge encodes clips."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    encode_mp4([np.full((64, 96, 3), v, np.uint8) for v in (40, 200)], 5.0, path)
    return path.read_bytes()


def _counts(sessions: sessionmaker[Session], store: SnapshotStore) -> dict[str, int]:
    with sessions() as session:
        rows = {name: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
                for name, model in (("events", EventRecord), ("audit", TicketTransition),
                                    ("dead_letters", DeadLetter), ("evidence_log", EvidenceAccess),
                                    ("webhook_deliveries", WebhookDelivery), ("attempts", WebhookAttempt),
                                    ("tickets", Ticket))}
    return rows | {"snapshots": len(list(store.root.glob("??/*.jpg"))), "clips": len(ClipStore.beside(store).files())}


def _gridwatch(*args: str) -> str:
    cli = Path(sys.executable).with_name("gridwatch")
    return subprocess.run([str(cli), "server", "purge", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("via", ["cli", "function"])
def test_old_data_goes_new_data_and_open_evidence_stay(database_url: str, tmp_path: Path, via: str,
                                                        mp4: bytes) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    store = SnapshotStore(tmp_path / "snapshots")
    old_loose = _snapshot(store, (10, 10, 10), OLD)  # old, no open ticket points at it: goes
    old_evidence = _snapshot(store, (20, 20, 20), OLD)  # old, but an open ticket's event shows it: stays
    new_loose = _snapshot(store, (30, 30, 30), NOW)  # new: stays
    try:
        with sessions() as session:
            closed_old = _event(session, OLD, track=1)  # event and audit trail go
            open_old = _event(session, OLD, track=2, snapshot=old_evidence)  # open: all stays
            closed_new = _event(session, NOW, track=3)  # closed yesterday: all stays
            _close(session, closed_old, OLD)
            _close(session, closed_new, NOW - timedelta(days=1))
            old_clip = _clip(store, session, closed_old, mp4, OLD)  # old, its ticket closed: goes
            kept_clips = [_clip(store, session, open_old, mp4, OLD),  # old, but evidence of an open ticket
                          _clip(store, session, closed_new, mp4, NOW)]  # new
            for at in (OLD, NOW):
                store_message(session, "gridwatch/v1/x", b"{not json", context=IngestContext(clock=ManualClock(at)))
                session.add(EvidenceAccess(sha256=new_loose, ticket_id=None, actor="guard", role="security",
                                           principal_kind="user", client="127.0.0.1", user_agent="t", at=at))
            subscription = WebhookSubscription(url="http://127.0.0.1:9/", secret="x" * 16, events=["*"],
                                               active=True, created_by="boss", created_at=OLD)
            session.add(subscription)
            session.flush()
            for at, status in ((OLD, "delivered"), (OLD, "pending"), (NOW, "failed")):
                delivery = WebhookDelivery(subscription_id=subscription.id, transition_id=len(status), ticket_id=1,
                                           event="open", payload={}, status=status, attempts=1, created_at=at)
                session.add(delivery)
                session.flush()
                session.add(WebhookAttempt(delivery_id=delivery.id, at=at, status_code=200, latency_ms=1.0))
            session.commit()
            closed_old_trail = session.scalar(sa.select(sa.func.count()).where(
                TicketTransition.ticket_id == closed_old))
        before = _counts(sessions, store)
        expected = {"events": 1, "snapshots": 1, "clips": 1, "audit": closed_old_trail, "dead_letters": 1,
                    "evidence_log": 1, "webhook_deliveries": 1, "plates": 0}
        assert closed_old_trail >= 1

        if via == "cli":
            args = ["--db-url", database_url, "--data-dir", str(tmp_path)]
            dry = _gridwatch("--dry-run", *args)
            assert dry.splitlines() == [f"{k}: would delete {v}" for k, v in expected.items()]
            assert _counts(sessions, store) == before  # a dry run deletes nothing
            assert _gridwatch(*args).splitlines() == [f"{k}: deleted {v}" for k, v in expected.items()]
        else:
            policy = Policy.from_settings(ServerSettings(data_dir=tmp_path))
            with sessions() as session:
                assert purge(session, store, policy, NOW, dry_run=True) == expected
                assert _counts(sessions, store) == before
                assert purge(session, store, policy, NOW) == expected

        after = _counts(sessions, store)
        assert after == before | {"events": before["events"] - 1, "snapshots": 2, "clips": 2,
                                  "audit": before["audit"] - closed_old_trail, "dead_letters": 1,
                                  "evidence_log": 1, "webhook_deliveries": 2, "attempts": 2}
        assert store.find(old_loose) is None
        clips = ClipStore.beside(store)
        assert clips.find(old_clip) is None and all(clips.find(e) is not None for e in kept_clips)
        print(f"\nretention: clips before {before['clips']}, deleted {expected['clips']}, kept {after['clips']}")
        assert store.find(old_evidence) is not None and store.find(new_loose) is not None
        with sessions() as session:
            assert session.get(Ticket, closed_old) is not None  # the ticket stays; its trail and events went
            kept = set(session.scalars(sa.select(EventRecord.ticket_id)))
            assert kept == {open_old, closed_new}
            assert set(session.scalars(sa.select(WebhookDelivery.status))) == {"pending", "failed"}
            assert session.scalar(sa.select(EvidenceAccess.at)) > NOW - timedelta(days=1)
        with sessions() as session:  # nothing left to do
            assert set(purge(session, store, Policy.from_settings(ServerSettings()), NOW).values()) == {0}
    finally:
        engine.dispose()


def test_zero_days_keeps_a_kind_forever(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with session_factory(engine)() as session:
            store_message(session, "gridwatch/v1/x", b"{", context=IngestContext(clock=ManualClock(OLD)))
            policy = Policy.from_settings(ServerSettings(retention_dead_letters_days=0))
            assert purge(session, SnapshotStore(tmp_path / "none"), policy, NOW)["dead_letters"] == 0
            assert session.scalar(sa.select(sa.func.count()).select_from(DeadLetter)) == 1
    finally:
        engine.dispose()


def test_every_snapshot_view_is_in_the_evidence_access_log(database_url: str, tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path, database_url=database_url, port=0)
    with ServerRunner(settings, start_ingest=False) as runner:
        add_account(runner, "boss", "admin")
        add_account(runner, "guard", "security")
        jpeg = image_bytes(color=(90, 120, 30))
        sha = hashlib.sha256(jpeg).hexdigest()
        guard = login(runner.url, "guard")
        assert guard.put(f"/api/snapshots/{sha}", content=jpeg).status_code == 201
        outcome = ingest_via(runner, api_event(snapshot=sha))
        other = ingest_via(runner, api_event(camera="cam-other"))  # a ticket this snapshot is not evidence of
        assert other.ticket_id != outcome.ticket_id
        for viewed_as in ({}, {"ticket_id": other.ticket_id}):  # logged, but with no (or no false) ticket
            assert guard.get(f"/api/snapshots/{sha}", params=viewed_as).status_code == 200
        for _ in range(2):  # no browser cache hides a second view
            fetched = guard.get(f"/api/snapshots/{sha}", params={"ticket_id": outcome.ticket_id},
                                headers={"User-Agent": "guard-phone"})
            assert fetched.status_code == 200 and fetched.headers["cache-control"] == "private, no-cache"
        assert guard.get(f"/api/snapshots/{'0' * 64}").status_code == 404  # nothing shown, nothing logged
        assert guard.get("/api/evidence-access").status_code == 403

        admin = login(runner.url, "boss")
        log = admin.get("/api/evidence-access", params={"sha256": sha}).json()
        assert log["total"] == 4 and [e["ticket_id"] for e in log["items"]][2:] == [None, None]
        entry = log["items"][0]
        assert (entry["actor"], entry["role"], entry["principal_kind"]) == ("guard", "security", "user")
        assert (entry["ticket_id"], entry["client"], entry["user_agent"]) == (outcome.ticket_id, "127.0.0.1",
                                                                             "guard-phone")
        assert admin.get("/api/evidence-access", params={"ticket_id": outcome.ticket_id}).json()["total"] == 2
        assert admin.get("/api/evidence-access", params={"actor": "boss"}).json()["total"] == 0
        assert admin.get("/api/evidence-access", params={"sha256": "../etc"}).status_code == 422
        guard.close()
        admin.close()
