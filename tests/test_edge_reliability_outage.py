"""Issue 5 fault test: the broker stops for 60 s while a replay publishes events, then comes back.

Real processes on real parts: `gridwatch edge replay --publish` on the shared clip, a private
Mosquitto that the test stops and restarts, and the real server reading it. A second broker and
server receive the same clip without an outage (run during the outage, to keep the test short):
the server behind the outage must end with every event exactly once and the same tickets.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Mosquitto, ReportCounts
from tests.reliability_helpers import (
    CLIP,
    Server,
    counts_line,
    edge_config,
    read_events,
    start_replay,
    ticket_shape,
    wait_for,
)
from tests.test_edge_outbox import collect

OUTAGE_S = 60.0


def test_broker_down_60s_during_replay_loses_and_duplicates_nothing(tmp_path: Path, samples: Path,
                                                                    mosquitto: Mosquitto,
                                                                    report_counts: ReportCounts) -> None:
    start_time = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S%z")
    clean_broker = Mosquitto(tmp_path / "clean-mosquitto")
    clean_broker.start()
    server, clean_server = Server(tmp_path / "server", mosquitto.url), Server(tmp_path / "clean-server",
                                                                              clean_broker.url)
    raw: list[dict] = []
    subscriber = collect(mosquitto.url, raw)  # counts what the broker delivers, resends included
    try:
        assert wait_for(lambda: subscriber.is_connected(), bool, 10)
        events_out = tmp_path / "outage" / "events.jsonl"
        edge = start_replay(edge_config(tmp_path / "outage", mosquitto.url, server), samples / CLIP, events_out,
                            start_time, drain_s=OUTAGE_S + 30)
        # The first event is on disk: stop the broker, so the rest of the replay publishes into the outage.
        assert wait_for(lambda: read_events(events_out), bool, 60, period=0.02), "the replay emitted nothing"
        mosquitto.stop()
        stopped_at = time.monotonic()

        clean_out = tmp_path / "clean" / "events.jsonl"
        clean_edge = start_replay(edge_config(tmp_path / "clean", clean_broker.url, clean_server), samples / CLIP,
                                  clean_out, start_time, drain_s=10)
        assert clean_edge.wait(60) == 0, clean_edge.stdout.read()
        clean_published = read_events(clean_out)
        wait_for(clean_server.events, lambda items: len(items) >= len(clean_published), 30)

        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
        assert edge.poll() is None, "the edge gave up before the broker came back"
        before_restart = len(server.events())
        mosquitto.start()
        output = edge.communicate(timeout=60)[0]
        assert edge.returncode == 0, output
        published = read_events(events_out)
        # The server's consumer backs off up to 30 s between reconnects; its persistent session keeps the rest.
        delivered = wait_for(server.events, lambda items: len(items) >= len(published), 45)
        wait_for(lambda: raw, lambda r: len({e["event_id"] for e in r}) >= len(published), 10)
    finally:
        subscriber.loop_stop()
        server_tickets, clean_tickets = server.tickets(), clean_server.tickets()
        server.stop()
        clean_server.stop()
        clean_broker.stop()

    report_counts(f"outage {OUTAGE_S:.0f} s: {counts_line(published, delivered, len(raw))}; "
          f"{len(published) - before_restart} waited out the outage in the outbox; "
          f"tickets {len(server_tickets)} (without the outage {len(clean_tickets)})")
    assert sorted(e["event_id"] for e in delivered) == sorted(e["event_id"] for e in published)  # exactly once
    assert len(published) == len(clean_published) and len(published) >= 3
    assert before_restart < len(published)  # the outage really held events back
    assert ticket_shape(server_tickets) == ticket_shape(clean_tickets)
    assert all(t["ended_at"] for t in server_tickets)
