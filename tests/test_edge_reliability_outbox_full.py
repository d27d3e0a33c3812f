"""Issue 5 fault test: the outbox fills while the broker is down; the overflow policy acts as documented
(updates go first, then ends, then the oldest starts), the drops show in /metrics per phase and as
``edge_outbox_overflow`` events at a real server, whose sequence-gap report counts exactly the
dropped events; what was kept reaches the server once the broker is back.

Real parts: a stopped-then-restarted Mosquitto, the publisher with its SQLite outbox, the metrics
endpoint over HTTP, a GridWatch server subscribed before the outage (its persistent session waits
at the broker). The outbox is built directly with a small bound: the config's minimum (1 MiB)
would need thousands of events to fill.
"""

from __future__ import annotations

import logging
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridwatch.broker.contract import Event
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher
from gridwatch.edge.node.metrics import MetricsServer, health, render
from tests.conftest import Mosquitto, ReportCounts
from tests.reliability_helpers import Server, wait_for
from tests.test_edge_outbox import collect

INCIDENTS = 12  # each: start, update, update, end


def event(incident: str, phase: str, n: int) -> Event:
    now = datetime.now(UTC)
    return Event(incident_id=incident, type="loitering", phase=phase, site_id="site-a", node_id="node-a",
                 camera_id="cam-1", zone_id="lobby", started_at=now, observed_at=now, attributes={"n": n})


def scrape(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def metric(text: str, line_start: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1])


def test_full_outbox_drops_by_policy_and_shows_it(tmp_path: Path, mosquitto: Mosquitto,
                                                  caplog: pytest.LogCaptureFixture,
                                                  report_counts: ReportCounts) -> None:
    received: list[dict] = []
    subscriber = collect(mosquitto.url, received)
    server = Server(tmp_path / "server", mosquitto.url)
    assert wait_for(lambda: subscriber.is_connected(), bool, 10)
    assert wait_for(lambda: server.get("/api/health")["mqtt"]["subscribed"], bool, 10)
    mosquitto.stop()
    sample = len(event(uuid.uuid4().hex, "start", 0).to_json()) + 40  # + the topic
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=16 * sample)  # room for about 16 of 48 events
    publisher = MqttPublisher("site-a", "node-a", mosquitto.url, client_id="full-outbox-edge", outbox=outbox,
                              reconnect_max_s=1)
    endpoint = MetricsServer("127.0.0.1", 0, lambda: render(publisher, []), lambda: health(publisher, []))
    try:
        emitted: dict[str, str] = {}
        with caplog.at_level(logging.WARNING, logger="gridwatch.edge.delivery.publish"):
            for i in range(INCIDENTS):
                incident = uuid.uuid4().hex
                for j, phase in enumerate(("start", "update", "update", "end")):
                    e = event(incident, phase, i * 4 + j)
                    publisher.emit(e, None)
                    emitted[e.event_id] = phase
        kept = {m.payload for m in outbox.pending(limit=1000)}
        reports_stored = publisher.overflow_events  # the first drop is reported at once; the rest on reconnect
        text = scrape(endpoint.port, "/metrics")
        healthz = scrape(endpoint.port, "/healthz")
        dropped = {phase: int(metric(text, f'gridwatch_edge_outbox_dropped_total{{phase="{phase}"}}'))
                   for phase in ("start", "update", "end")}
        depth = metric(text, "gridwatch_edge_outbox_messages ")

        mosquitto.start()
        assert wait_for(lambda: received, lambda r: len({e["event_id"] for e in r}) >= len(kept), 20)
        assert wait_for(lambda: outbox.depth().messages, lambda n: n == 0, 10) == 0
        after = scrape(endpoint.port, "/metrics")
        # The server's consumer backs off up to 30 s between reconnects; its persistent session keeps the rest.
        stored = wait_for(server.events, lambda items: len(items) >= len(kept), 45)
        gaps = server.get("/api/sequence-gaps?limit=500")["items"]
        tickets = server.get("/api/tickets?type=edge_outbox_overflow")["items"]
    finally:
        endpoint.close()
        publisher.close(5)
        subscriber.loop_stop()
        server.stop()

    delivered = {e["event_id"] for e in received}
    reports = [e["payload"] for e in stored if e["type"] == "edge_outbox_overflow"]
    reported = {phase: sum(r["attributes"][f"dropped_{phase}"] for r in reports) for phase in dropped}
    rules = [e for e in stored if e["type"] != "edge_outbox_overflow"]
    missing = sum(g["missing"] for g in gaps)
    report_counts(f"outbox full: emitted {len(emitted)}, kept {len(kept)} (metric {depth:g}), dropped {dropped}, "
          f"delivered {len(delivered)}, duplicates {len(received) - len(delivered)}; at the server: "
          f"{len(rules)} events, {len(reports)} overflow events reporting {reported} "
          f"(dropped events stored {min(r['attributes']['first_dropped_at'] for r in reports)} .. "
          f"{max(r['attributes']['last_dropped_at'] for r in reports)}), "
          f"sequence gaps {len(gaps)} with {missing} missing, overflow tickets {len(tickets)}")
    assert dropped["update"] == 2 * INCIDENTS and dropped["end"] > 0  # every update went before any end...
    assert dropped["start"] == 0  # ...and the starts, the events that matter most, all survived
    assert depth == len(kept) and len(emitted) + reports_stored == len(kept) + sum(dropped.values())
    assert outbox.dropped_totals() == {k: v for k, v in dropped.items() if v}  # nothing dropped after the outage
    survivors = [emitted[e["event_id"]] for e in rules]
    assert sorted(survivors) == sorted(["start"] * INCIDENTS + ["end"] * (len(kept) - reports_stored - INCIDENTS))
    assert {e["event_id"] for e in rules} <= delivered and len(stored) == len({e["event_id"] for e in stored})
    # The overflow events told the server everything the outbox dropped, and the drops are exactly the gaps.
    assert reported == dropped and reports
    assert missing == sum(dropped.values()) and all(g["node_id"] == "node-a" and not g["closed_at"] for g in gaps)
    assert len(tickets) == 1 and tickets[0]["event_count"] == len(reports)  # repeats join one ticket
    assert any("outbox full: dropped" in r.getMessage() for r in caplog.records)  # the log line, for journald
    assert '"mqtt_connected": false' in healthz and '"outbox_messages"' in healthz
    assert metric(after, "gridwatch_edge_outbox_messages ") == 0
    assert metric(after, "gridwatch_edge_mqtt_connected ") == 1
