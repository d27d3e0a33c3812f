"""A node whose outbox is wiped (new disk, reinstall) is reported as one reset, not as lost events
(issue 18, acceptance 5).

Real parts: the edge's publisher and outbox file, a private Mosquitto, and the server ingesting from it.
The node publishes under its first outbox, the outbox file is deleted, and the same node publishes
again: its numbers start at 1 under a new epoch, and the server's node status says ``reset``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from gridwatch.broker.contract import Event, EventType, Phase
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher
from tests.conftest import Mosquitto, ReportCounts
from tests.reliability_helpers import Server, wait_for

SITE, NODE = "site-r", "node-r"


def publish(url: str, outbox_path: Path, count: int) -> str:
    """``count`` events through a fresh publisher on ``outbox_path``; the outbox's epoch."""
    outbox = Outbox(outbox_path)
    publisher = MqttPublisher(SITE, NODE, url, client_id="reset-test-edge", outbox=outbox)
    try:
        assert publisher.connected.wait(15)
        now = datetime.now(UTC)
        for _ in range(count):
            publisher.emit(Event(incident_id=uuid.uuid4().hex, type=EventType.COURIER_ENTRY, phase=Phase.START,
                                 site_id=SITE, node_id=NODE, camera_id="cam-1", zone_id="gate", started_at=now,
                                 observed_at=now), None)
        publisher.close()
        assert outbox.depth().messages == 0
        return outbox.epoch
    finally:
        outbox.close()


def test_wiped_outbox_is_a_reset_in_the_node_status(tmp_path: Path, mosquitto: Mosquitto,
                                                     report_counts: ReportCounts) -> None:
    server = Server(tmp_path / "server", mosquitto.url)
    outbox_path = tmp_path / "edge" / "outbox.db"
    try:
        first_epoch = publish(mosquitto.url, outbox_path, 40)
        wait_for(server.events, lambda items: len(items) >= 40, 30)
        for path in outbox_path.parent.glob("outbox.db*"):  # the disk is replaced
            path.unlink()
        second_epoch = publish(mosquitto.url, outbox_path, 5)
        wait_for(server.events, lambda items: len(items) >= 45, 30)
        nodes = server.get("/api/node-sequences")
        gaps = server.get("/api/sequence-gaps")["items"]
    finally:
        server.stop()
    [node] = [n for n in nodes if n["node_id"] == NODE]
    report_counts(f"outbox wiped after 40 events, 5 more: node status {node['status']!r}, resets {node['resets']}, "
                  f"seq before reset {node['seq_before_reset']}, last seq {node['last_seq']}, gaps {len(gaps)}")
    assert first_epoch != second_epoch
    assert (node["status"], node["resets"], node["seq_before_reset"], node["last_seq"], node["epoch"]) == (
        "reset", 1, 40, 5, second_epoch)
    assert gaps == []
