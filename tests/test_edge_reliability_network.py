"""Issue 5 fault test: a bad link between edge and broker (latency and cut connections) loses no event.

A real publisher process (MqttPublisher with its on-disk outbox, the code `edge run` uses) talks to a
real Mosquitto through a TCP proxy the test controls; a persistent subscriber on the broker itself
counts what arrives. Cuts land while messages are in flight, so paho resends without a PUBACK and the
broker may deliver a message twice; what matters is that every event_id arrives.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, Mosquitto, ReportCounts
from tests.reliability_helpers import wait_for
from tests.tcp_proxy import TcpProxy
from tests.test_edge_outbox import collect

COUNT = 150
CUTS = 4

PUBLISHER = """
import sys, time, uuid
from datetime import UTC, datetime
from pathlib import Path
from gridwatch.broker.contract import Event
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher

url, db, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
publisher = MqttPublisher("site-a", "node-a", url, client_id="flaky-link-edge", outbox=Outbox(db),
                          reconnect_max_s=1)
publisher.connected.wait(10)
now = datetime.now(UTC)
for i in range(count):
    phase = ("start", "update", "end")[i % 3]
    publisher.emit(Event(incident_id=uuid.uuid4().hex, type="loitering", phase=phase, site_id="site-a",
                         node_id="node-a", camera_id="cam-1", zone_id="lobby", started_at=now, observed_at=now,
                         attributes={"n": i}), None)
    print(i, flush=True)
    time.sleep(0.05)
publisher.close(timeout=30)
print("depth", Outbox(db).depth().messages, "reconnects", publisher.reconnects, flush=True)
"""


def test_latency_and_cut_connections_lose_no_event(tmp_path: Path, mosquitto: Mosquitto,
                                                   report_counts: ReportCounts) -> None:
    received: list[dict] = []
    subscriber = collect(mosquitto.url, received)
    proxy = TcpProxy(mosquitto.port)
    try:
        assert wait_for(lambda: subscriber.is_connected(), bool, 10)
        proxy.latency_s = 0.15
        log = tmp_path / "edge.log"
        with log.open("w") as out:
            edge = subprocess.Popen([sys.executable, "-c", PUBLISHER, proxy.url, str(tmp_path / "outbox.db"),
                                     str(COUNT)], stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        for _ in range(CUTS):  # each cut lands on an established session with events in flight
            links = proxy.accepted
            assert wait_for(lambda: proxy.accepted, lambda n, links=links: n > links and log.read_text(), 20)
            time.sleep(0.6)
            proxy.cut()
        proxy.latency_s = 0.0
        edge.wait(60)
        output = log.read_text()
        assert edge.returncode == 0, output
        wait_for(lambda: received, lambda r: len({e["event_id"] for e in r}) >= COUNT, 20)
    finally:
        subscriber.loop_stop()
        proxy.close()

    distinct = {e["event_id"]: e for e in received}
    delivered = sorted(e["attributes"]["n"] for e in distinct.values())
    report_counts(f"flaky link ({proxy.cuts} cuts, 150 ms latency): published {COUNT}, delivered {len(distinct)}, "
          f"duplicates {len(received) - len(distinct)}, lost {COUNT - len(distinct)}; edge: {output.splitlines()[-1]}")
    assert delivered == list(range(COUNT))
    assert output.splitlines()[-1].startswith("depth 0 ")  # every event acknowledged, so gone from the outbox
    reconnects = int(output.split()[-1])
    assert reconnects >= CUTS, output  # every cut really broke an established session
