"""A site with a broker pair: one broker is killed mid-run and comes back (issue 18, acceptance 4).

Real parts: two Mosquitto processes on free ports, `gridwatch edge run` with ``mqtt.urls: [A, B]`` as
its own process (the shared clip looped on its own clock, as a camera), and two server replicas on one
PostgreSQL database, one subscribed to each broker (the server takes one broker URL; a broker pair
gets a replica per broker, as tests/test_scale_live.py runs replicas). Broker A is SIGKILLed once the
first event reached it: the edge moves to B, its outbox drains there, and when A is back the edge
returns to it. Every event the edge sequenced must be stored exactly once and no incident may yield
two tickets, whatever the brokers delivered twice.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from tests.conftest import REPO, Mosquitto, ReportCounts, _fresh_postgres_database
from tests.reliability_helpers import CLIP, Server, edge_config, wait_for
from tests.test_edge_outbox import collect

DOWN_S = 20.0
FAILBACK_CHECK_S = 2.0


def broker(directory: Path) -> Mosquitto:
    """The project's Mosquitto config, saving its state every second instead of 30: a broker SIGKILLed
    forgets what it had not saved, the server's subscription included (a production pair keeps the
    shipped interval and accepts that window, or bridges the two brokers)."""
    mosquitto = Mosquitto(directory)
    mosquitto.conf_path.write_text(mosquitto.conf_path.read_text().replace("autosave_interval 30",
                                                                           "autosave_interval 1"))
    mosquitto.start()
    return mosquitto


def test_broker_killed_mid_run_fails_over_and_back_losing_and_duplicating_nothing(
        tmp_path: Path, samples: Path, report_counts: ReportCounts) -> None:
    preferred, fallback = broker(tmp_path / "broker-a"), broker(tmp_path / "broker-b")
    database_url, drop = _fresh_postgres_database()
    server_a = Server(tmp_path / "server-a", preferred.url, database_url)
    server_b = Server(tmp_path / "server-b", fallback.url, database_url)
    raw_a: list[dict] = []
    raw_b: list[dict] = []
    subscribers = [collect(preferred.url, raw_a), collect(fallback.url, raw_b)]
    log_path = tmp_path / "edge" / "edge.log"
    edge = None
    try:
        assert wait_for(lambda: all(s.is_connected() for s in subscribers), bool, 10)
        time.sleep(2)  # the brokers have saved the subscriptions
        config = edge_config(tmp_path / "edge", preferred.url, server_a)
        data = yaml.safe_load(config.read_text())
        data["mqtt"] = {"urls": [preferred.url, fallback.url], "reconnect_max_s": 2,
                        "failback_check_s": FAILBACK_CHECK_S}
        camera = data["cameras"][0]
        camera.update(source=str(samples / CLIP), loop=True)  # played on its own clock, as a camera would
        camera["zones"][0]["rules"][0].update(min_dwell_s=3, update_every_s=2)  # events all along the run
        config.write_text(yaml.safe_dump(data))
        with log_path.open("w") as log:
            edge = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "edge", "run", "--config",
                                     str(config)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        assert wait_for(lambda: raw_a, bool, 90, period=0.05), "no event reached the preferred broker"
        preferred.proc.send_signal(signal.SIGKILL)
        preferred.proc.wait(10)
        preferred.proc = None
        killed_after = len(raw_a)
        # The edge is on B: events made during the outage reach B (and server B) without waiting for A.
        assert wait_for(lambda: len(raw_b), lambda n: n >= 2, 60), "events did not reach the fallback broker"
        time.sleep(max(0.0, DOWN_S - 5))
        preferred.start()
        restarted_after = len(raw_a)
        assert wait_for(lambda: len(raw_a), lambda n: n > restarted_after, 60), "the edge never came back to A"
        time.sleep(3)
        edge.send_signal(signal.SIGTERM)  # a clean stop drains the outbox
        assert edge.wait(60) == 0
        with sqlite3.connect(tmp_path / "edge" / "outbox.db") as db:
            sequenced = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
            left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        by_seq = {e["seq"]: e["event_id"] for e in raw_a + raw_b}
        delivered = wait_for(server_a.events, lambda items: len(items) >= len(by_seq), 60)
        tickets = server_a.tickets()
        gaps = server_a.get("/api/sequence-gaps")["items"]
    finally:
        if edge is not None and edge.poll() is None:
            edge.kill()
        for subscriber in subscribers:
            subscriber.loop_stop()
        server_a.stop()
        server_b.stop()
        preferred.stop()
        fallback.stop()
        drop()

    output = log_path.read_text()
    assert "Traceback" not in output, output[-3000:]
    moves = [line for line in output.splitlines() if "failed; trying" in line or "moving back" in line]
    connects = output.count("connected to the broker")
    lost = sorted(set(range(1, sequenced + 1)) - set(by_seq))
    stored = [e["event_id"] for e in delivered]
    duplicate_tickets = sum(n - 1 for n in Counter((t["type"], t["camera_id"], t["zone_id"], t["opened_at"])
                                                   for t in tickets).values())
    report_counts(f"broker pair, A SIGKILLed for {DOWN_S:.0f} s: events sequenced {sequenced}, delivered via A "
                  f"{len(raw_a)} ({killed_after} before the kill), via B {len(raw_b)}, stored {len(set(stored))}, "
                  f"duplicates stored {len(stored) - len(set(stored))}, lost {len(lost)}; edge reconnects "
                  f"{connects - 1}, broker moves {len(moves)}; tickets {len(tickets)}, duplicate tickets "
                  f"{duplicate_tickets}; sequence gaps at the server {len(gaps)}")
    assert left == 0 and not lost, f"lost seqs {lost}"
    assert sorted(stored) == sorted(set(by_seq.values())) and len(stored) == sequenced  # each exactly once
    assert any("moving back" in line for line in moves) and any("failed; trying" in line for line in moves), moves
    assert duplicate_tickets == 0 and tickets
    assert not gaps, gaps
