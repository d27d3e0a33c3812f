"""Issue 5 fault test 3: the server is killed (SIGKILL) mid-ingest and restarted; nothing is lost.

Real processes on real parts: `gridwatch server` on a fresh PostgreSQL database, reading a private
Mosquitto; the edge's publisher with its outbox streams incidents (start, updates, end) while the
test kills the server once part of the stream is committed, keeps publishing into the broker (the
server's persistent MQTT session queues it), then starts the server again. Messages the dead
server had received but not acknowledged come again: the ``event_id`` constraint makes them
harmless. The database must end with every event exactly once, one ended ticket per incident
with all its events, and no gap in the node's sequence numbers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gridwatch.broker.contract import DetectedObject, Event
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher
from gridwatch.server.models import EventRecord, SequenceGap, Ticket
from tests.conftest import REPO, Mosquitto, ReportCounts, _fresh_postgres_database, free_port
from tests.reliability_helpers import wait_for

INCIDENTS = 60
PHASES = ("start", "update", "update", "update", "update", "end")
EVENTS = INCIDENTS * len(PHASES)
KILL_AFTER = EVENTS // 4  # committed events when the server dies
PACE_S = 0.01


def start_server(db_url: str, mqtt_url: str, data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gridwatch.deploy", "server", "--db-url", db_url, "--mqtt-url", mqtt_url,
         "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO,
    )


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as response:
        return json.loads(response.read())


def stream(publisher: MqttPublisher, published: list[Event]) -> None:
    """Incidents interleaved, as several people loitering at once would produce them."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    incidents = [uuid.uuid4().hex for _ in range(INCIDENTS)]
    for step, phase in enumerate(PHASES):
        for n, incident in enumerate(incidents):
            seen = t0 + timedelta(seconds=n + 10 * step)
            event = Event(incident_id=incident, type="loitering", phase=phase, site_id="site-k", node_id="node-k",
                          camera_id="cam-1", zone_id="lobby", started_at=t0 + timedelta(seconds=n), observed_at=seen,
                          ended_at=seen if phase == "end" else None, attributes={"dwell_s": 60.0 + 10 * step},
                          object=DetectedObject(class_name="person", track_id=n, box=(0.1, 0.2, 0.3, 0.6),
                                                confidence=0.9))
            publisher.emit(event, None)
            published.append(event)
            time.sleep(PACE_S)


def test_server_killed_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path, mosquitto: Mosquitto,
                                                               report_counts: ReportCounts) -> None:
    db_url, drop = _fresh_postgres_database()
    engine = sa.create_engine(db_url)
    port = free_port()
    server = start_server(db_url, mosquitto.url, tmp_path / "server", port)
    publisher = MqttPublisher("site-k", "node-k", mosquitto.url, client_id="kill-test-edge",
                              outbox=Outbox(tmp_path / "outbox.db"))
    published: list[Event] = []

    def stored_count() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(EventRecord)).scalar_one()

    try:
        assert wait_for(lambda: health(port)["mqtt"]["subscribed"], bool, 60), "the server never subscribed"
        assert wait_for(lambda: publisher.connected.is_set(), bool, 10)
        sender = threading.Thread(target=stream, args=(publisher, published))
        sender.start()
        wait_for(stored_count, lambda n: n >= KILL_AFTER, 60)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        at_kill = stored_count()
        streaming_at_kill = sender.is_alive()  # the stream goes on while the server is dead
        sender.join(120)
        assert wait_for(lambda: publisher.outbox.depth().messages, lambda n: n == 0, 30) == 0  # all at the broker
        assert stored_count() == at_kill  # nobody ingests while the server is down

        server = start_server(db_url, mosquitto.url, tmp_path / "server", port)
        final = wait_for(stored_count, lambda n: n >= EVENTS, 90)
        time.sleep(1.0)  # redeliveries of what was already stored, if any, arrive right after the connect
        counts = health(port)["mqtt"]
        with engine.connect() as conn:
            rows = conn.execute(sa.select(EventRecord.event_id, EventRecord.ticket_id)).all()
            tickets = conn.execute(sa.select(Ticket.incident_id, Ticket.event_count, Ticket.ended_at)).all()
            gaps = conn.execute(sa.select(sa.func.count()).select_from(SequenceGap)).scalar()
    finally:
        publisher.close(5)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        engine.dispose()
        drop()

    ids = {e.event_id for e in published}
    got = [event_id for event_id, _ in rows]
    report_counts(f"server killed after {at_kill} of {EVENTS} events were committed: published {len(ids)}, "
          f"delivered {len(set(got) & ids)}, duplicates stored {len(got) - len(set(got))}, "
          f"redelivered after the restart and already stored {counts['duplicates']}, "
          f"stored by the restarted server {counts['stored']}, lost {len(ids - set(got))}; "
          f"tickets {len(tickets)}, sequence gaps {gaps}")
    assert streaming_at_kill, "the stream had ended before the kill: nothing was mid-ingest"
    assert 0 < at_kill < EVENTS and counts["stored"] > 0
    assert final == len(got) == len(set(got)) == EVENTS and set(got) == ids  # exactly once
    assert len(tickets) == INCIDENTS == len({incident for incident, _, _ in tickets})
    assert all(count == len(PHASES) and ended is not None for _, count, ended in tickets)
    assert all(ticket_id is not None for _, ticket_id in rows)
    assert gaps == 0  # the node's sequence numbers arrived without a hole
