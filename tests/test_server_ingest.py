"""store_message on SQLite and PostgreSQL: tickets per incident, idempotency, dead letters."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.broker import topics
from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase, SnapshotRef
from gridwatch.server.db import MIGRATIONS_DIR, create_engine, current_revision, session_factory, upgrade
from gridwatch.server.ingest.store import MAX_EVENT_BYTES, IngestStatus, store_message, store_messages
from gridwatch.server.models import Base, DeadLetter, EventRecord, Ticket
from gridwatch.server.registry import grids
from gridwatch.server.tickets import correlation, indicators

T0 = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
SITE, NODE, CAMERA = "site-a", "node-1", "cam-gate"
TOPIC = topics.events_topic(SITE, NODE, CAMERA)


def sha(n: int) -> str:
    return f"{n:064x}"


def make_event(phase: Phase = Phase.START, incident_id: str | None = None, *, seconds: float = 0,
               **overrides: object) -> Event:
    fields: dict[str, object] = {
        "incident_id": incident_id or uuid.uuid4().hex,
        "type": EventType.LOITERING,
        "phase": phase,
        "site_id": SITE,
        "node_id": NODE,
        "camera_id": CAMERA,
        "zone_id": "lobby",
        "object": DetectedObject(class_name="person", track_id=7, box=(0.1, 0.2, 0.3, 0.6), confidence=0.9),
        "started_at": T0,
        "observed_at": T0 + timedelta(seconds=seconds),
        "attributes": {"dwell_s": 60.0 + seconds},
    }
    fields.update(overrides)
    return Event(**fields)


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def store(sessions: sessionmaker[Session], event: Event | bytes, topic: str = TOPIC):
    payload = event if isinstance(event, bytes) else event.to_json().encode()
    with sessions() as session:
        return store_message(session, topic, payload)


def counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
                for model in (EventRecord, Ticket, DeadLetter)}


def only_ticket(sessions: sessionmaker[Session]) -> Ticket:
    with sessions() as session:
        return session.scalars(sa.select(Ticket)).one()


def test_migrations_match_the_models_and_rerun_cleanly(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # every server start runs it: must be a no-op the second time
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # get_current_head raises when two migrations claim the same parent: the chain must stay linear.
    assert current_revision(database_url) == ScriptDirectory.from_config(config).get_current_head()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_indicator_scans_read_only_the_opened_at_index_on_postgresql(database_url: str) -> None:
    """Alembic does not compare INCLUDE lists: check the index carries every column the indicators read."""
    upgrade(database_url)
    engine = create_engine(database_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))
    try:
        with session_factory(engine)() as session:
            for group_by in ("grid", "community", "street", "district", "category", "type"):
                indicators.compute(session, group_by=group_by, period="month", since=T0, until=T0,
                                   grid_id="g", community_id="c", street_id="s", district_id="d", type="t",
                                   subcategory="x")
        read = {column for sql in statements for column in re.findall(r"tickets\.(\w+)", sql)}
        [index] = [i for i in Ticket.__table__.indexes if i.name == "ix_tickets_opened_at"]
        carried = {"opened_at", *index.dialect_options["postgresql"]["include"]}
        assert read and read <= carried, f"not in the index: {sorted(read - carried)}"
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                definition = conn.scalar(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                                 "'ix_tickets_opened_at'"))
            included = definition.split("INCLUDE (", 1)[1].rstrip(")").split(", ")
            assert set(included) == carried - {"opened_at"}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_day_summary_gives_the_indicators_the_tickets_give() -> None:
    """PostgreSQL's ticket_day_stats (backfilled by the migration, then kept by its trigger through
    transitions, a moved opening time and deletes) adds up to exactly what a scan of the tickets gives."""
    from bench.ingest_bench import FILL_SQL
    from tests.conftest import _fresh_postgres_database

    url, drop = _fresh_postgres_database()
    engine = None
    try:
        upgrade(url, "0005")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(FILL_SQL), {"n": 6000})  # before the summary existed: the migration backfills
        upgrade(url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE tickets SET incident_id = md5('first' || id)"))  # free the generated ids
            conn.execute(sa.text(FILL_SQL), {"n": 3000})  # after: the trigger
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE tickets SET stage = 'voided', closed_at = NULL, rating = NULL "
                                 "WHERE id % 97 = 0"))
            conn.execute(sa.text("UPDATE tickets SET opened_at = opened_at + interval '3 days' WHERE id % 101 = 0"))
            conn.execute(sa.text("UPDATE tickets SET overdue = NOT overdue, rework_count = rework_count + 1 "
                                 "WHERE id % 89 = 0"))
            conn.execute(sa.text("DELETE FROM tickets WHERE id % 103 = 0"))
        june, july = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
        windows = [(None, None), (june, july), (june + timedelta(hours=16), june + timedelta(days=8, hours=3)),
                   (june + timedelta(hours=1), june + timedelta(hours=5)), (june, None), (None, june)]
        with session_factory(engine)() as session:
            assert session.scalar(sa.text("SELECT count(*) FROM ticket_day_stats")) > 0
            for group_by in ("none", "street", "community", "category", "type"):
                for period in ("none", "day", "month"):
                    for since, until in windows:
                        for filters in ({}, {"street_id": "street-3"}, {"type": "loitering"}):
                            kwargs = dict(group_by=group_by, period=period, since=since, until=until, **filters)
                            summed = indicators.compute(session, **kwargs)
                            assert summed == indicators.compute(session, use_summary=False, **kwargs), kwargs
            assert sum(r["tickets"] for r in indicators.compute(session)) == session.scalar(
                sa.text("SELECT count(*) FROM tickets"))
    finally:
        if engine is not None:
            engine.dispose()
        drop()


def test_a_start_opens_one_ticket(sessions: sessionmaker[Session]) -> None:
    event = make_event(snapshot=SnapshotRef(sha256=sha(1), width=640, height=360))
    outcome = store(sessions, event)

    assert outcome.status is IngestStatus.STORED
    assert outcome.ticket_created
    assert outcome.event_id == event.event_id
    assert counts(sessions) == {"events": 1, "tickets": 1, "dead_letters": 0}
    ticket = only_ticket(sessions)
    assert ticket.id == outcome.ticket_id
    assert (ticket.incident_id, ticket.type, ticket.camera_id, ticket.zone_id) == (
        event.incident_id, "loitering", CAMERA, "lobby")
    assert ticket.stage == "reported"
    assert ticket.opened_at == T0 and ticket.opened_at.tzinfo is not None
    assert ticket.event_count == 1
    assert ticket.ended_at is None
    assert ticket.snapshot_sha256 == ticket.latest_snapshot_sha256 == sha(1)
    assert ticket.attributes == {"dwell_s": 60.0}
    with sessions() as session:
        row = session.scalars(sa.select(EventRecord)).one()
        assert row.ticket_id == ticket.id
        assert row.payload == event.to_dict()  # the whole event is kept
        assert row.snapshot_sha256 == sha(1)


def test_a_redelivered_event_changes_nothing(sessions: sessionmaker[Session]) -> None:
    event = make_event()
    first = store(sessions, event)
    before = only_ticket(sessions)

    again = store(sessions, event)

    assert again.status is IngestStatus.DUPLICATE
    assert again.ticket_id == first.ticket_id
    assert not again.ticket_created
    assert counts(sessions) == {"events": 1, "tickets": 1, "dead_letters": 0}
    after = only_ticket(sessions)
    assert (after.event_count, after.updated_at, after.last_event_at) == (
        before.event_count, before.updated_at, before.last_event_at)


def test_update_and_end_attach_to_the_same_ticket(sessions: sessionmaker[Session]) -> None:
    start = make_event(snapshot=SnapshotRef(sha256=sha(1), width=640, height=360))
    incident = start.incident_id
    update = make_event(Phase.UPDATE, incident, seconds=30,
                        snapshot=SnapshotRef(sha256=sha(2), width=640, height=360))
    end = make_event(Phase.END, incident, seconds=45, ended_at=T0 + timedelta(seconds=44))

    outcomes = [store(sessions, e) for e in (start, update, end)]

    assert [o.status for o in outcomes] == [IngestStatus.STORED] * 3
    assert [o.ticket_created for o in outcomes] == [True, False, False]
    assert len({o.ticket_id for o in outcomes}) == 1
    assert counts(sessions) == {"events": 3, "tickets": 1, "dead_letters": 0}
    ticket = only_ticket(sessions)
    assert ticket.event_count == 3
    assert ticket.ended_at == T0 + timedelta(seconds=44)
    assert ticket.last_event_at == T0 + timedelta(seconds=45)
    assert ticket.attributes == {"dwell_s": 105.0}  # the latest event's figures
    assert ticket.snapshot_sha256 == sha(1)  # first evidence kept
    assert ticket.latest_snapshot_sha256 == sha(2)


def test_an_update_before_its_start_opens_the_ticket_and_the_start_attaches(
    sessions: sessionmaker[Session],
) -> None:
    start = make_event(snapshot=SnapshotRef(sha256=sha(1), width=640, height=360))
    update = make_event(Phase.UPDATE, start.incident_id, seconds=20,
                        snapshot=SnapshotRef(sha256=sha(2), width=640, height=360))

    first = store(sessions, update)
    second = store(sessions, start)

    assert first.ticket_created and not second.ticket_created
    assert first.ticket_id == second.ticket_id
    ticket = only_ticket(sessions)
    assert ticket.event_count == 2
    assert ticket.opened_at == T0
    assert ticket.snapshot_sha256 == sha(1)  # the start's evidence, though it came second
    assert ticket.latest_snapshot_sha256 == sha(2)
    assert ticket.attributes == {"dwell_s": 80.0}  # the older start did not overwrite newer figures
    assert ticket.last_event_at == T0 + timedelta(seconds=20)


def test_different_incidents_get_different_tickets(sessions: sessionmaker[Session]) -> None:
    a = store(sessions, make_event())
    b = store(sessions, make_event(type=EventType.FIRE_LANE_BLOCKED, zone_id="lane-1"))
    assert a.ticket_id != b.ticket_id
    assert counts(sessions)["tickets"] == 2


def _valid_dict() -> dict:
    return make_event().to_dict()


def _json(data: dict) -> bytes:
    import json

    return json.dumps(data).encode()


MALFORMED = {
    "not json": (TOPIC, b"{this is not json", "not a gridwatch.event/1 payload"),
    "empty": (TOPIC, b"", "not a gridwatch.event/1 payload"),
    "missing field": (TOPIC, _json({k: v for k, v in _valid_dict().items() if k != "incident_id"}),
                      "incident_id"),
    "unknown type": (TOPIC, _json({**_valid_dict(), "type": "alien_landing"}), "type"),
    "unknown field": (TOPIC, _json({**_valid_dict(), "color": "red"}), "color"),
    "naive time": (TOPIC, _json({**_valid_dict(), "observed_at": "2025-03-01T08:30:00"}), "observed_at"),
    "bad topic": ("gridwatch/v1/site-a/node-1/events", _json(_valid_dict()), "bad topic"),
    "wildcard in topic": ("gridwatch/v1/site-a/node-1/+/events", _json(_valid_dict()), "bad topic"),
    "topic/payload mismatch": (topics.events_topic(SITE, NODE, "cam-other"), _json(_valid_dict()),
                               "camera_id is 'cam-other' in the topic but 'cam-gate' in the payload"),
    "not utf-8": (TOPIC, b'{"schema": "gridwatch.event/1", "zone_id": "\xff\xfe"}', "not UTF-8"),
    "oversized": (TOPIC, _json({**_valid_dict(), "pad": "x" * MAX_EVENT_BYTES}), "too large"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_messages_are_dead_lettered_never_raised(
    sessions: sessionmaker[Session], case: str
) -> None:
    topic, payload, reason_part = MALFORMED[case]

    outcome = store(sessions, payload, topic)

    assert outcome.status is IngestStatus.DEAD_LETTERED
    assert reason_part in outcome.reason
    assert counts(sessions) == {"events": 0, "tickets": 0, "dead_letters": 1}
    with sessions() as session:
        letter = session.scalars(sa.select(DeadLetter)).one()
        assert letter.id == outcome.dead_letter_id
        assert letter.topic == topic
        assert letter.payload == payload  # kept whole, byte for byte
        assert reason_part in letter.reason
        assert letter.received_at.tzinfo is not None


def test_an_event_claiming_another_cameras_incident_is_dead_lettered(sessions: sessionmaker[Session]) -> None:
    first = make_event()
    store(sessions, first)
    intruder = make_event(Phase.UPDATE, first.incident_id, seconds=5, camera_id="cam-2")

    outcome = store(sessions, intruder, topics.events_topic(SITE, NODE, "cam-2"))

    assert outcome.status is IngestStatus.DEAD_LETTERED
    assert "already has ticket" in outcome.reason
    assert counts(sessions) == {"events": 1, "tickets": 1, "dead_letters": 1}
    assert only_ticket(sessions).event_count == 1


def test_concurrent_ingest_stores_each_event_once(sessions: sessionmaker[Session]) -> None:
    """Workers race on one new incident (each event delivered twice): one ticket, no lost count."""
    start = make_event()
    events = [start] + [make_event(Phase.UPDATE, start.incident_id, seconds=i) for i in range(1, 4)]
    deliveries = [e for e in events for _ in range(2)]
    barrier = threading.Barrier(len(deliveries))
    results: list[IngestStatus] = []
    errors: list[BaseException] = []

    def deliver(event: Event) -> None:
        try:
            barrier.wait(10)
            results.append(store(sessions, event).status)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(e,)) for e in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(results) == sorted([IngestStatus.STORED] * 4 + [IngestStatus.DUPLICATE] * 4)
    assert counts(sessions) == {"events": 4, "tickets": 1, "dead_letters": 0}
    assert only_ticket(sessions).event_count == 4


def test_one_batch_groups_a_burst_across_a_grids_cameras_like_separate_batches(
        sessions: sessionmaker[Session]) -> None:
    """Correlation reads the batch's places, fingerprints and groupable tickets up front; a ticket the
    batch itself opens must still be found by the next incident of the same grid in that batch."""
    doc = grids.load_sample()
    with sessions() as session:
        grids.replace(session, doc)
        session.commit()
        bound = [(c.site_id, c.camera_id) for street in doc.streets for community in street.communities
                 for grid in community.grids for c in grid.cameras]
        places = correlation.locate_all(session, {*bound, (SITE, "cam-nowhere")})
        assert places == {camera: grids.locate(session, *camera) for camera in places}
    grid = next(g for street in doc.streets for community in street.communities for g in community.grids
                if len(g.cameras) >= 2)
    first, second = grid.cameras[:2]
    burst = [make_event(type=EventType.FIRE_LANE_BLOCKED, site_id=c.site_id, camera_id=c.camera_id, object=None,
                        observed_at=T0 + timedelta(seconds=n), started_at=T0 + timedelta(seconds=n))
             for n, c in enumerate((first, second))]
    with sessions() as session:
        batch = store_messages(session, [(topics.events_topic(e.site_id, e.node_id, e.camera_id), e.to_json())
                                         for e in burst])
    assert [o.status for o in batch.outcomes] == [IngestStatus.STORED, IngestStatus.STORED]
    assert batch.outcomes[0].ticket_id == batch.outcomes[1].ticket_id and batch.outcomes[0].ticket_created
    merges = [t.details for t in batch.transitions if t.action == "merge"]
    assert merges == [{"incident_id": burst[1].incident_id, "camera_id": second.camera_id, "via": "group"}]
