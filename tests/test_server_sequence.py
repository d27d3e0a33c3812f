"""Per-node sequence numbers on SQLite and PostgreSQL: gaps found per batch, filled by late
deliveries and closed, listed over REST, logged; one ingest batch costs a constant number of
statements however many events it holds; a node whose outbox was wiped (a new epoch) is one reset
(issue 18, acceptance 5), not a gap."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, EventType, Phase
from gridwatch.server.ingest.store import store_messages
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings

PASSWORD = "sequence-test-password"
T0 = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)


def numbered(seq: int | None, node: str = "node-1", epoch: str | None = None) -> Event:
    return Event(incident_id=uuid.uuid4().hex, type=EventType.COURIER_ENTRY, phase=Phase.START, site_id="site-a",
                 node_id=node, camera_id="cam-1", zone_id="gate", started_at=T0, observed_at=T0, seq=seq, epoch=epoch)


class Server:
    def __init__(self, runner: ServerRunner, http: httpx.Client) -> None:
        self.runner, self.http = runner, http

    def ingest(self, *events: Event) -> None:
        messages = [(topics.events_topic(e.site_id, e.node_id, e.camera_id), e.to_json().encode()) for e in events]
        with self.runner.app.state.sessions() as session:
            store_messages(session, messages)

    def gaps(self, **params: object) -> list[tuple[str, int, int, int, bool]]:
        page = self.http.get("/api/sequence-gaps", params=params)
        assert page.status_code == 200, page.text
        return sorted((g["node_id"], g["first_seq"], g["last_seq"], g["missing"], g["closed_at"] is not None)
                      for g in page.json()["items"])


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=database_url, port=0,
                              admin_password=PASSWORD)
    with ServerRunner(settings, start_ingest=False) as runner, httpx.Client(base_url=runner.url, timeout=10) as http:
        http.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        yield Server(runner, http)


def test_gaps_are_found_filled_late_and_closed(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gridwatch.server.ingest.sequence"):
        server.ingest(numbered(5), numbered(6))  # the first number seen is the baseline: 1..4 are history
        assert server.gaps() == []
        server.ingest(numbered(9), numbered(7), numbered(12))  # out of order within one batch
        assert server.gaps() == [("node-1", 8, 8, 1, False), ("node-1", 10, 11, 2, False)]
        server.ingest(numbered(10), numbered(3, node="node-2"), numbered(None))  # late; another node; unnumbered
        assert server.gaps() == [("node-1", 8, 8, 1, False), ("node-1", 10, 11, 1, False)]
        server.ingest(numbered(11), numbered(8), numbered(13))
    assert server.gaps() == [("node-1", 8, 8, 0, True), ("node-1", 10, 11, 0, True)]
    assert server.gaps(open="true") == []
    assert any("skipped events 8..8, 10..11 (3 missing)" in r.getMessage() for r in caplog.records)
    assert any("gap 10..11 closed" in r.getMessage() for r in caplog.records)
    nodes = server.http.get("/api/node-sequences").json()
    assert [(n["node_id"], n["last_seq"], n["open_gaps"], n["missing"]) for n in nodes] == [
        ("node-1", 13, 0, 0), ("node-2", 3, 0, 0)]


def test_a_redelivered_event_fills_nothing_twice(server: Server) -> None:
    first, late = numbered(1), numbered(3)
    server.ingest(first, numbered(4), numbered(6))
    server.ingest(late, late)  # the same event twice in a batch, then again in a later one
    server.ingest(late)
    assert server.gaps() == [("node-1", 2, 3, 1, False), ("node-1", 5, 5, 1, False)]
    assert server.gaps(node_id="node-9") == []
    assert server.http.get("/api/sequence-gaps", params={"node_id": "bad/id"}).status_code == 422


def test_a_batch_costs_the_same_statements_whatever_its_size(server: Server) -> None:
    """Set-based: a 20-event and a 400-event batch from a known node run the same number of statements."""
    engine = server.runner.app.state.sessions.kw["bind"]
    server.ingest(numbered(1))
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if "node_sequences" in statement or "sequence_gaps" in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        server.ingest(*(numbered(s) for s in range(2, 40, 2)))  # 19 events, 18 gaps
        small = len(statements)
        statements.clear()
        server.ingest(*(numbered(s) for s in range(40, 840, 2)))  # 400 events, 400 gaps
        large = len(statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert small == large <= 4, (small, large)
    assert len(server.gaps(limit=500)) == 418


def test_a_wiped_outbox_is_one_reset_not_thousands_of_missing_events(server: Server,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    with caplog.at_level(logging.INFO, logger="gridwatch.server.ingest.sequence"):
        server.ingest(*(numbered(s, epoch=old) for s in range(1, 3001) if s != 2500))  # 2500 was lost
        assert server.gaps() == [("node-1", 2500, 2500, 1, False)]
        server.ingest(*(numbered(s, epoch=new) for s in range(1, 6)))  # new disk: 1.. again, new epoch
        server.ingest(numbered(2500, epoch=old), numbered(2999, epoch=old))  # the old box's late stragglers
        server.ingest(numbered(8, epoch=new))  # the new numbering still tells a loss: 6 and 7
    assert server.gaps() == [("node-1", 6, 7, 2, False), ("node-1", 2500, 2500, 1, True)]
    resets = [r.getMessage() for r in caplog.records if "sequence reset" in r.getMessage()]
    assert len(resets) == 1 and "after seq 3000" in resets[0] and "1 open gaps of the old numbering closed" in resets[0]
    [node] = server.http.get("/api/node-sequences").json()
    assert (node["status"], node["resets"], node["seq_before_reset"], node["last_seq"], node["epoch"]) == (
        "gaps", 1, 3000, 8, new)
    server.ingest(numbered(6, epoch=new), numbered(7, epoch=new))
    [node] = server.http.get("/api/node-sequences").json()
    assert (node["status"], node["open_gaps"], node["reset_at"] is not None) == ("reset", 0, True)


def test_the_first_epoch_seen_is_adopted_without_a_reset(server: Server) -> None:
    """An edge upgraded from before epochs keeps its numbering: its first epoch is no reset."""
    server.ingest(numbered(1), numbered(2))
    server.ingest(numbered(3, epoch=uuid.uuid4().hex))
    [node] = server.http.get("/api/node-sequences").json()
    assert (node["status"], node["resets"], node["last_seq"]) == ("ok", 0, 3)
