"""The edge outbox: durable across a hard kill, ordered, and bounded by the documented policy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from gridwatch.edge.delivery.outbox import Outbox
from tests.conftest import ReportCounts


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_messages_come_back_in_order_and_leave_only_when_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    seqs = [box.append(f"t/{i}", f"payload {i}".encode(), "start") for i in range(5)]
    assert seqs == sorted(seqs)
    assert [m.payload for m in box.pending()] == [f"payload {i}".encode() for i in range(5)]
    box.remove(seqs[1])
    assert [m.seq for m in box.pending()] == [seqs[0], *seqs[2:]]
    assert [m.seq for m in box.pending(after_seq=seqs[2], limit=1)] == [seqs[3]]
    assert box.depth().messages == 4


def test_sequence_never_goes_back_after_deletes_and_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    last = box.append("t", b"x", "start")
    box.remove(last)
    box.close()
    again = Outbox(tmp_path / "outbox.db")
    assert again.append("t", b"y", "start") > last


def test_appended_messages_survive_sigkill(tmp_path: Path) -> None:
    """A writer killed with SIGKILL loses nothing it was told was stored."""
    db = tmp_path / "outbox.db"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from gridwatch.edge.delivery.outbox import Outbox
        box = Outbox(Path({str(db)!r}))
        i = 0
        while True:
            box.append("t", str(i).encode(), "start")
            print(i, flush=True)
            i += 1
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = [writer.stdout.readline() for _ in range(200)]
    writer.kill()
    writer.wait(10)
    stored = {int(m.payload) for m in Outbox(db).pending(limit=100_000)}
    assert {int(line) for line in acknowledged} <= stored


def test_size_bound_drops_updates_then_ends_then_oldest_starts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_bytes=10 * 101)  # ten messages of 100 bytes + 1-byte topic
    for _ in range(4):
        box.append("t", b"s" * 100, "start")
        box.append("t", b"u" * 100, "update")
        box.append("t", b"e" * 100, "end")
    kept = [m.phase for m in box.pending()]
    assert len(kept) == 10
    assert kept.count("update") == 2 and kept.count("end") == 4 and kept.count("start") == 4
    for _ in range(8):
        box.append("t", b"s" * 100, "start")
    kept = box.pending(limit=100)
    assert [m.phase for m in kept] == ["start"] * 10  # only the newest starts remain
    assert box.dropped_totals() == {"update": 4, "end": 4, "start": 2}
    report = box.take_drop_report()
    assert report.phases == {"update": 4, "end": 4, "start": 2} and report.total == 10
    assert not box.take_drop_report()


def test_age_bound_expires_all_but_starts(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / "outbox.db", max_age_s=60, clock=clock)
    box.append("t", b"start", "start")
    box.append("t", b"update", "update")
    box.append("t", b"end", "end")
    clock.now += 61
    box.append("t", b"fresh", "update")
    assert [m.payload for m in box.pending()] == [b"start", b"fresh"]
    assert box.depth().oldest_age_s == 61
    report = box.take_drop_report()
    assert report.phases == {"update": 1, "end": 1}
    assert (report.first_at, report.last_at) == (1_000_000.0, 1_000_000.0)  # when the dropped ones were stored


def test_drop_report_spans_the_dropped_messages_and_survives_a_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    box = Outbox(tmp_path / "outbox.db", max_bytes=3 * 101, clock=clock)
    for i in range(6):
        clock.now = 1_000_000.0 + i
        box.append("t", b"u" * 100, "update")
    box.close()
    report = Outbox(tmp_path / "outbox.db", clock=clock).take_drop_report()
    assert report.phases == {"update": 3}
    assert (report.first_at, report.last_at) == (1_000_000.0, 1_000_002.0)  # the three oldest went


def test_payload_built_from_its_sequence_number_carries_the_stored_one(tmp_path: Path) -> None:
    """The number written into a message is the key it is stored under, and a reopen continues after it."""
    box = Outbox(tmp_path / "outbox.db")
    seqs = [box.append("t", lambda seq: f"seq={seq}".encode(), "start") for _ in range(3)]
    box.remove(seqs[-1])
    box.close()
    again = Outbox(tmp_path / "outbox.db")
    seqs.append(again.append("t", lambda seq: f"seq={seq}".encode(), "start"))
    assert seqs == [1, 2, 3, 4]
    assert [m.payload for m in again.pending()] == [b"seq=1", b"seq=2", b"seq=4"]


# -- the publisher with its outbox, against a real Mosquitto ----------------------------------------

EVENT_SCRIPT = """
import sys, time, uuid
from datetime import UTC, datetime
from pathlib import Path
from gridwatch.broker.contract import Event
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher

url, db, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
publisher = MqttPublisher("site-a", "node-a", url, client_id="outbox-test-edge", outbox=Outbox(db))
now = datetime.now(UTC)
for i in range(count):
    publisher.emit(Event(incident_id=uuid.uuid4().hex, type="loitering", phase="start", site_id="site-a",
                         node_id="node-a", camera_id="cam-1", zone_id="lobby", started_at=now, observed_at=now,
                         attributes={"n": i}), None)
    print(i, flush=True)
if sys.argv[4:] == ["wait"]:
    time.sleep(3600)  # stay up until killed
publisher.close()
"""


def collect(url: str, received: list[dict]):
    """A persistent-session subscriber on every events topic, collecting payloads."""
    import json

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gridwatch.broker import topics
    from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="outbox-test-server", clean_session=False)
    client.reconnect_delay_set(min_delay=1, max_delay=2)  # back quickly after the broker restarts
    client.on_connect = lambda c, *_: c.subscribe(topics.EVENTS_SUBSCRIPTION, qos=1)
    client.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    connect_client(client, parse_mqtt_url(url))
    client.loop_start()
    return client


def wait_until(condition, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_events_stored_while_the_broker_is_down_survive_a_sigkill(tmp_path: Path, mosquitto,
                                                                  report_counts: ReportCounts) -> None:
    """Broker down, edge emits and is killed; edge restarts with the broker up: all arrive."""
    received: list[dict] = []
    subscriber = collect(mosquitto.url, received)
    assert wait_until(lambda: subscriber.is_connected())
    mosquitto.stop()
    db = tmp_path / "outbox.db"
    edge = subprocess.Popen([sys.executable, "-c", EVENT_SCRIPT, mosquitto.url, str(db), "40", "wait"],
                            stdout=subprocess.PIPE, text=True)
    emitted = [edge.stdout.readline() for _ in range(40)]
    edge.kill()
    edge.wait(10)
    assert len(emitted) == 40 and Outbox(db).depth().messages == 40

    mosquitto.start()
    restarted = subprocess.Popen([sys.executable, "-c", EVENT_SCRIPT, mosquitto.url, str(db), "0"],
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len({e["event_id"] for e in received}) >= 40), len(received)
    finally:
        restarted.wait(30)
        subscriber.loop_stop()
    assert sorted(e["attributes"]["n"] for e in {e["event_id"]: e for e in received}.values()) == list(range(40))
    assert Outbox(db).depth().messages == 0  # every one acknowledged, so forgotten
    distinct = {e["event_id"] for e in received}
    report_counts(f"edge SIGKILLed with 40 in its outbox: published 40, delivered {len(distinct)}, "
                  f"duplicates {len(received) - len(distinct)}, lost {40 - len(distinct)}")
