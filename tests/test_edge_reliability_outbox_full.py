"""Issue 5 fault test: the outbox fills while the broker is down; the overflow policy acts as documented
(updates go first, then ends, then the oldest starts), the drops show in /metrics per phase, and
what was kept reaches the broker once it is back.

Real parts: a stopped-then-restarted Mosquitto, the publisher with its SQLite outbox, the metrics
endpoint over HTTP. The outbox is built directly with a small bound: the config's minimum (1 MiB)
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
from gridwatch.edge.metrics import MetricsServer, health, render
from gridwatch.edge.outbox import Outbox
from gridwatch.edge.publish import MqttPublisher
from tests.conftest import Mosquitto
from tests.reliability_helpers import wait_for
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
                                                  caplog: pytest.LogCaptureFixture) -> None:
    received: list[dict] = []
    subscriber = collect(mosquitto.url, received)
    assert wait_for(lambda: subscriber.is_connected(), bool, 10)
    mosquitto.stop()
    sample = len(event(uuid.uuid4().hex, "start", 0).to_json()) + 40  # + the topic
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=16 * sample)  # room for about 16 of 48 events
    publisher = MqttPublisher("site-a", "node-a", mosquitto.url, client_id="full-outbox-edge", outbox=outbox,
                              reconnect_max_s=1)
    endpoint = MetricsServer("127.0.0.1", 0, lambda: render(publisher, []), lambda: health(publisher, []))
    try:
        emitted: dict[str, str] = {}
        with caplog.at_level(logging.WARNING, logger="gridwatch.edge.publish"):
            for i in range(INCIDENTS):
                incident = uuid.uuid4().hex
                for j, phase in enumerate(("start", "update", "update", "end")):
                    e = event(incident, phase, i * 4 + j)
                    publisher.emit(e, None)
                    emitted[e.event_id] = phase
        kept = {m.payload for m in outbox.pending(limit=1000)}
        text = scrape(endpoint.port, "/metrics")
        healthz = scrape(endpoint.port, "/healthz")
        dropped = {phase: int(metric(text, f'gridwatch_edge_outbox_dropped_total{{phase="{phase}"}}'))
                   for phase in ("start", "update", "end")}
        depth = metric(text, "gridwatch_edge_outbox_messages ")

        mosquitto.start()
        assert wait_for(lambda: received, lambda r: len({e["event_id"] for e in r}) >= len(kept), 20)
        assert wait_for(lambda: outbox.depth().messages, lambda n: n == 0, 10) == 0
        after = scrape(endpoint.port, "/metrics")
    finally:
        endpoint.close()
        publisher.close(5)
        subscriber.loop_stop()

    delivered = {e["event_id"] for e in received}
    print(f"outbox full: emitted {len(emitted)}, kept {len(kept)} (metric {depth:g}), dropped {dropped}, "
          f"delivered {len(delivered)}, duplicates {len(received) - len(delivered)}")
    assert dropped["update"] == 2 * INCIDENTS and dropped["end"] > 0  # every update went before any end...
    assert dropped["start"] == 0  # ...and the starts, the events that matter most, all survived
    assert sum(dropped.values()) + depth == len(emitted) == len(kept) + sum(dropped.values())
    assert outbox.dropped_totals() == {k: v for k, v in dropped.items() if v}
    assert sorted(emitted[i] for i in delivered) == sorted(["start"] * INCIDENTS + ["end"] * (len(kept) - INCIDENTS))
    assert any("outbox full: dropped" in r.getMessage() for r in caplog.records)  # the log line, for journald
    assert '"mqtt_connected": false' in healthz and '"outbox_messages"' in healthz
    assert metric(after, "gridwatch_edge_outbox_messages ") == 0
    assert metric(after, "gridwatch_edge_mqtt_connected ") == 1
