"""Outbox throughput with fsync on: events/s into the outbox (append) and out of it (read + delete
after the PUBACK), against the cheapest durable baseline measured in the same run: appending the
same payloads to a plain file with an fsync after each one.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.common import table
from gridwatch.broker import topics
from gridwatch.broker.contract import Event
from gridwatch.edge.delivery.outbox import Outbox

EVENTS = 2000


def payloads(count: int) -> list[bytes]:
    now = datetime.now(UTC)
    return [Event(incident_id=uuid.uuid4().hex, type="loitering", phase="update", site_id="bench", node_id="n",
                  camera_id="c", zone_id="z", started_at=now, observed_at=now, attributes={"dwell_s": i})
            .to_json().encode() for i in range(count)]


def fsync_file_rate(directory: Path, data: list[bytes]) -> float:
    started = time.perf_counter()
    with (directory / "baseline.log").open("ab") as log:
        for payload in data:
            log.write(payload + b"\n")
            log.flush()
            os.fsync(log.fileno())
    return len(data) / (time.perf_counter() - started)


def outbox_rates(directory: Path, data: list[bytes]) -> tuple[float, float]:
    box = Outbox(directory / "outbox.db")
    topic = topics.events_topic("bench", "n", "c")
    started = time.perf_counter()
    for payload in data:
        box.append(topic, payload, "update")
    into = len(data) / (time.perf_counter() - started)
    started = time.perf_counter()
    last = 0
    while batch := box.pending(after_seq=last, limit=100):
        for message in batch:
            box.remove(message.seq)
        last = batch[-1].seq
    out = len(data) / (time.perf_counter() - started)
    assert box.depth().messages == 0
    box.close()
    return into, out


def main() -> None:
    data = payloads(EVENTS)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = fsync_file_rate(Path(tmp), data)
        into, out = outbox_rates(Path(tmp), data)
    print(f"\noutbox: {EVENTS} events of {len(data[0])} bytes, SQLite WAL, synchronous=FULL")
    print(table(["path", "events/s", "x fsync'd file append"],
                [["plain file, fsync per event (baseline)", baseline, 1.0],
                 ["outbox append (into)", into, into / baseline],
                 ["outbox read + delete (out)", out, out / baseline]]))
    print(f"SUMMARY outbox: {into:.0f} events/s in, {out:.0f} events/s out "
          f"({into / baseline:.2f}x / {out / baseline:.2f}x an fsync'd file append)")


if __name__ == "__main__":
    main()
