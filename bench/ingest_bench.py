"""Ticket-engine benchmarks on this machine: ingest throughput beside Mosquitto's pass-through, and
ticket-list / indicator query latency at one million tickets (PostgreSQL).

    .venv/bin/python bench/ingest_bench.py [--events 20000] [--rounds 3] [--tickets 1000000]
                                           [--skip-queries|--skip-ingest]

Ingest is measured end to end: MQTT publish → broker → server ingest → ticket committed, with the
server's own consumer (batched transactions, correlation, system transitions). Pass-through is a
plain QoS 1 persistent-session subscriber (the same paho client factory, protocol and session kind
as the server's consumer) on the same private Mosquitto. Both are fed by the same publisher, which runs in
its own process (so it never competes with the measured side for the GIL), with the same messages
at the same QoS, and both are timed the same way (first publish to last message received, or to the
last event committed). The two are interleaved: pass-through, ingest, pass-through, … and each
ingest round is compared with the faster of the pass-throughs on either side of it, so a slow
moment of the shared machine during one measurement cannot flatter the ratio.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, EventType, Phase
from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.mqtt_source import MqttIngest
from gridwatch.server.ingest.store import IngestContext
from gridwatch.server.registry.accounts import create_account
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("GRIDWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
UPDATES_PER_INCIDENT = 8
BENCH_PASSWORD = "bench-only-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = (REPO / "broker" / "mosquitto" / "gridwatch.conf").read_text()
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    conf = conf.replace("/var/lib/mosquitto/", f"{workdir}/")
    (workdir / "mosquitto.conf").write_text(conf)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(workdir / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def make_messages(count: int, cameras_n: int = 200) -> list[tuple[str, bytes]]:
    """Incidents on ``cameras_n`` cameras of fire lanes: a start, updates, an end, interleaved as live."""
    t0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    per = UPDATES_PER_INCIDENT + 2
    messages: list[tuple[str, bytes]] = []
    cameras = [f"cam-{n:03d}" for n in range(cameras_n)]
    round_ = 0
    while len(messages) < count:
        incidents = {c: uuid.uuid4().hex for c in cameras}
        for step in range(per):
            phase = Phase.START if step == 0 else Phase.END if step == per - 1 else Phase.UPDATE
            for camera in cameras:
                now = t0 + timedelta(minutes=round_ * 30, seconds=step * 10)
                event = Event(incident_id=incidents[camera], type=EventType.FIRE_LANE_BLOCKED, phase=phase,
                              site_id="bench", node_id="node-1", camera_id=camera, zone_id="lane",
                              started_at=t0 + timedelta(minutes=round_ * 30), observed_at=now,
                              ended_at=now if phase is Phase.END else None, attributes={"dwell_s": 100.0 + step * 10})
                messages.append((topics.events_topic("bench", "node-1", camera), event.to_json().encode()))
        round_ += 1
    return messages[:count]


def publish_all(port: int, messages_file: Path) -> subprocess.Popen:
    """Start the publisher process: QoS 1, as fast as the broker acknowledges. Its first line of
    output is the CLOCK_MONOTONIC time of its first publish (see :func:`publish_started`)."""
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--publish", str(port),
                             str(messages_file)], stdout=subprocess.PIPE, text=True)


def publish_started(publisher: subprocess.Popen) -> float:
    """Wait for the publisher to finish; the monotonic time of its first publish."""
    out, _ = publisher.communicate(timeout=600)
    if publisher.returncode != 0:
        raise RuntimeError(f"the publisher failed with exit code {publisher.returncode}")
    return float(out.split()[0])


def publisher_process(port: int, messages_file: Path) -> None:
    """The publisher's own process: every message at QoS 1, at most 100 in flight."""
    messages = pickle.loads(messages_file.read_bytes())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("publisher: no connection to the broker")
    started = time.monotonic()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()
    print(started, flush=True)


def pass_through(port: int, messages_file: Path, count: int) -> float:
    """Messages/s a plain QoS 1 persistent-session subscriber receives (and acknowledges)."""
    received = 0
    done = threading.Event()
    ready = threading.Event()

    def on_message(_c: object, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    # The consumer's own client factory and session kind (MQTT 5 where the broker speaks it, persistent).
    sub = new_client(f"bench-sub-{uuid.uuid4().hex[:6]}")
    sub.on_message = on_message
    sub.on_connect = lambda client, *_a: client.subscribe(topics.EVENTS_SUBSCRIPTION, qos=1)
    sub.on_subscribe = lambda *_a: ready.set()
    connect_client(sub, parse_mqtt_url(f"mqtt://127.0.0.1:{port}"), persistent=True)
    sub.loop_start()
    if not ready.wait(10):
        raise RuntimeError("the pass-through subscriber did not subscribe")
    publisher = publish_all(port, messages_file)
    done.wait(300)
    finished = time.monotonic()
    started = publish_started(publisher)
    sub.disconnect()
    sub.loop_stop()
    if received != count:
        raise RuntimeError(f"pass-through received {received} of {count} messages")
    return count / (finished - started)


def fresh_database(prefix: str) -> tuple[str, sa.Engine]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", admin


def drop_database(url: str, admin: sa.Engine) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def ingest_rate(port: int, messages_file: Path, count: int) -> tuple[float, dict[str, int], int]:
    url, admin = fresh_database("gridwatch_bench_ingest")
    try:
        upgrade(url)
        engine = create_engine(url, pool_size=4)
        ingest = MqttIngest(mqtt_url=f"mqtt://127.0.0.1:{port}", client_id=f"bench-server-{uuid.uuid4().hex[:6]}",
                            subscription=topics.EVENTS_SUBSCRIPTION, session_factory=session_factory(engine),
                            context=IngestContext())
        ingest.start()
        assert ingest.wait_subscribed(10)
        publisher = publish_all(port, messages_file)
        deadline = time.monotonic() + 600
        while ingest.counts["stored"] + ingest.counts["duplicates"] < count and time.monotonic() < deadline:
            time.sleep(0.005)
        finished = time.monotonic()
        started = publish_started(publisher)
        ingest.stop()
        with engine.connect() as conn:
            tickets = conn.scalar(sa.text("SELECT count(*) FROM tickets"))
        engine.dispose()
        if ingest.counts["stored"] != count:
            raise RuntimeError(f"ingest stored {ingest.counts} of {count} events")
        return count / (finished - started), dict(ingest.counts), tickets
    finally:
        drop_database(url, admin)


FILL_SQL = """
INSERT INTO tickets (incident_id, type, site_id, node_id, camera_id, zone_id, stage, opened_at, last_event_at,
  event_count, attributes, created_at, updated_at, fingerprint, incident_count, open_incidents, last_incident_at,
  category, subcategory, category_version, responsible_unit, grid_id, community_id, street_id, district_id,
  version, rework_count, extension_count, rating, registered_at, dispatched_at, handling_at, feedback_at,
  verified_at, closed_at, stage_entered_at, escalation_level, overdue)
SELECT md5(g::text), t.type, 'site-' || (g % 50), 'node-1', 'cam-' || (g % 4000), 'zone', s.stage, o.at, o.at,
  3, '{}'::jsonb, o.at, o.at, md5('f' || g), 1, 0, o.at,
  t.category, t.sub, 0, 'dept-1', 'grid-' || (g % 1188), 'comm-' || ((g % 1188) / 12), 'street-' || ((g % 1188) / 120),
  'dist-1', 5, (g % 17 = 0)::int, (g % 23 = 0)::int, CASE WHEN s.closed THEN 1 + g % 5 END,
  o.at + interval '5 min', o.at + interval '20 min', o.at + interval '40 min', o.at + interval '3 hours',
  CASE WHEN s.closed THEN o.at + interval '5 hours' END, CASE WHEN s.closed THEN o.at + interval '6 hours' END,
  o.at, (g % 13 = 0)::int, (g % 11 = 0)
FROM generate_series(1, :n) AS g
CROSS JOIN LATERAL (SELECT timestamptz '2025-01-01 00:00+00' + (g * (365.0 * 86400 / :n)) * interval '1 second'
                    AS at) o
CROSS JOIN LATERAL (SELECT CASE g % 3 WHEN 0 THEN 'fire_lane_blocked' WHEN 1 THEN 'loitering'
                    ELSE 'courier_overstay' END AS type, '街面秩序' AS category,
                    CASE g % 3 WHEN 0 THEN '占用消防通道' WHEN 1 THEN '可疑人员徘徊' ELSE '快递员滞留' END AS sub) t
CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 < 8 THEN 'closed' WHEN g % 10 = 8 THEN 'handling' ELSE 'registered' END
                    AS stage, g % 10 < 8 AS closed) s
"""


def log_in(runner: ServerRunner, http: httpx.Client) -> None:
    """Log ``http`` in as a new admin: the REST API answers only signed-in users."""
    state = runner.app.state
    with state.sessions() as session:
        create_account(session, username="bench", password=BENCH_PASSWORD, role="admin", person_id="bench",
                       now=state.clock.now())
        session.commit()
    response = http.post("/api/auth/login", json={"username": "bench", "password": BENCH_PASSWORD})
    response.raise_for_status()
    http.headers["X-CSRF-Token"] = response.json()["csrf_token"]


def query_latency(tickets: int, repeats: int) -> dict[str, tuple[float, float]]:
    """p50/p95 ms of REST list and indicator requests against ``tickets`` generated rows."""
    url, admin = fresh_database("gridwatch_bench_query")
    try:
        upgrade(url)
        engine = create_engine(url)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(FILL_SQL), {"n": tickets})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE tickets"))
        print(f"  generated {tickets:,} tickets in {time.perf_counter() - t0:.0f} s", flush=True)
        engine.dispose()
        queries = {
            "list newest 50": ("/api/tickets", {"limit": 50}),
            "list page 20 (offset 1000)": ("/api/tickets", {"limit": 50, "offset": 1000}),
            "list by stage": ("/api/tickets", {"stage": "handling", "limit": 50}),
            "list by grid": ("/api/tickets", {"grid_id": "grid-42", "limit": 50}),
            "list by street + type": ("/api/tickets", {"street_id": "street-3", "type": "loitering", "limit": 50}),
            "indicators month by street": ("/api/indicators", {"by": "street", "since": "2025-06-01T00:00:00Z",
                                                               "until": "2025-07-01T00:00:00Z"}),
            "indicators week by grid": ("/api/indicators", {"by": "grid", "since": "2025-06-02T00:00:00Z",
                                                            "until": "2025-06-09T00:00:00Z"}),
            "indicators one grid, year by month": ("/api/indicators", {"grid_id": "grid-42", "period": "month"}),
            "indicators one street, month by grid": ("/api/indicators", {
                "by": "grid", "street_id": "street-3", "since": "2025-06-01T00:00:00Z",
                "until": "2025-07-01T00:00:00Z"}),
        }
        results = {}
        with tempfile.TemporaryDirectory() as tmp, ServerRunner(
                ServerSettings(data_dir=Path(tmp), database_url=url, port=0), start_ingest=False) as runner, \
                httpx.Client(base_url=runner.url, timeout=60) as http:
            log_in(runner, http)
            for name, (path, params) in queries.items():
                http.get(path, params=params).raise_for_status()  # warm
                samples = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    http.get(path, params=params).raise_for_status()
                    samples.append((time.perf_counter() - t) * 1000)
                samples.sort()
                results[name] = (statistics.median(samples), samples[int(0.95 * (len(samples) - 1))])
        return results
    finally:
        drop_database(url, admin)


def ingest_report(events: int, rounds: int) -> None:
    """Ingest beside Mosquitto's pass-through, interleaved in one run, printed."""
    messages = make_messages(events)
    with tempfile.TemporaryDirectory() as tmp:
        messages_file = Path(tmp) / "messages.pickle"
        messages_file.write_bytes(pickle.dumps(messages))
        proc, port = start_mosquitto(Path(tmp))
        try:
            passes = [pass_through(port, messages_file, len(messages))]
            ingests = []
            for _ in range(rounds):
                ingests.append(ingest_rate(port, messages_file, len(messages)))
                passes.append(pass_through(port, messages_file, len(messages)))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"ingest, {len(messages):,} events ({UPDATES_PER_INCIDENT + 2} per incident, 200 cameras), PostgreSQL, "
          f"publisher in its own process, {rounds} interleaved rounds:")
    ratios = []
    for n, (rate, counts, tickets) in enumerate(ingests):
        baseline = max(passes[n], passes[n + 1])
        ratios.append(rate / baseline)
        print(f"  round {n + 1}: pass-through {passes[n]:,.0f} / {passes[n + 1]:,.0f} msg/s "
              f"(baseline {baseline:,.0f}), ingest {rate:,.0f} events/s = {rate / baseline:.2f}×  "
              f"({counts['stored']:,} stored, {tickets} tickets)")
    rates = [rate for rate, _, _ in ingests]
    print(f"  ingest {statistics.median(rates):,.0f} events/s median ({min(rates):,.0f}–{max(rates):,.0f}); "
          f"ratio {statistics.median(ratios):.2f}× median ({min(ratios):.2f}–{max(ratios):.2f})")
    met = statistics.median(rates) >= 2000 and statistics.median(ratios) >= 0.5
    print(f"  goal ≥ 2,000 events/s and ≥ 0.5× pass-through (medians): {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds, each between two pass-throughs")
    parser.add_argument("--publish", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publisher_process(int(args.publish[0]), Path(args.publish[1]))
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (other work shares the cores)")
    if not args.skip_ingest:
        ingest_report(args.events, args.rounds)
    if not args.skip_queries:
        print(f"queries at {args.tickets:,} tickets (REST over HTTP, {args.repeats} runs each), p50 / p95 ms:")
        for name, (p50, p95) in query_latency(args.tickets, args.repeats).items():
            print(f"  {name:40s} {p50:7.1f} / {p95:7.1f} {'' if p95 < 100 else '  over 100 ms'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
