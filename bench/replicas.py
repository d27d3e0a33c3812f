"""Ingest throughput on the clustered broker with one and with two server replicas, in one run.

    .venv/bin/python -m bench replicas        (GRIDWATCH_BENCH_EVENTS=20000 to change the size)

A three-node RabbitMQ cluster on loopback (deploy/cluster/); N real ``gridwatch server`` processes on
a fresh PostgreSQL database consume the shared quorum queue; once they all consume, the events of
bench/ingest_bench.py (incidents: start, updates, end) are published over MQTT QoS 1, spread over
the nodes. Throughput is events stored per second between the first and the last event's
``received_at`` (the servers' commit clock). Two workloads: the ingest bench's 200 cameras, where
every batch of both replicas updates the same 200 ticket rows (the worst case for sharing), and
2,000 cameras (2,000 tickets, closer to a district's spread). The ratio of two replicas to one is
measured in the same run; on this 2-core machine the cluster, PostgreSQL, the publisher and both
replicas share two cores, so a ratio above 1 cannot be expected here: it shows what sharing costs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.common import table
from bench.ingest_bench import drop_database, fresh_database, make_messages
from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url
from gridwatch.deploy.cluster.rabbitmq import RabbitCluster
from gridwatch.deploy.cluster.replica import ReplicaProcess
from gridwatch.server.db import upgrade
from gridwatch.server.ingest.amqp_source import declare_on

QUEUE = "gridwatch.events"
EVENTS = int(os.environ.get("GRIDWATCH_BENCH_EVENTS", "20000"))
DRAIN_TIMEOUT_S = 600.0
WORKLOADS = (200, 2000)  # cameras: each camera's incidents share one ticket row


def preload(cluster: RabbitCluster, messages: list[tuple[str, bytes]]) -> float:
    """Publish every message at QoS 1 (spread over the nodes) and wait for every PUBACK; msg/s."""
    clients = []
    for index, url in enumerate(cluster.mqtt_urls):
        client = new_client(f"bench-replicas-pub-{index}-{os.getpid()}")
        client.max_inflight_messages_set(200)
        connect_client(client, parse_mqtt_url(url), blocking=True)
        client.loop_start()
        clients.append(client)
    started = time.perf_counter()
    infos = [clients[i % len(clients)].publish(topic, payload, qos=1) for i, (topic, payload) in enumerate(messages)]
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - started
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return len(messages) / elapsed


def drain(cluster: RabbitCluster, replicas: int, messages: list[tuple[str, bytes]], workdir: Path) -> dict:
    """One measurement: start ``replicas`` servers, publish, time until all are stored."""
    url, admin = fresh_database(f"gridwatch_bench_replicas{replicas}")
    servers: list[ReplicaProcess] = []
    try:
        upgrade(url)
        servers = [ReplicaProcess(i, cluster, url, workdir / f"run{replicas}-{len(messages)}", QUEUE)
                   for i in range(replicas)]
        for server in servers:
            server.start()
        publish_rate = preload(cluster, messages)
        engine = sa.create_engine(url)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        with engine.connect() as conn:
            while (stored := conn.scalar(sa.text("SELECT count(*) FROM events"))) < len(messages):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{replicas} replica(s) stored {stored} of {len(messages)} in time")
                time.sleep(0.2)
                conn.commit()
            first, last = conn.execute(sa.text("SELECT min(received_at), max(received_at) FROM events")).one()
            tickets = conn.scalar(sa.text("SELECT count(*) FROM tickets"))
        engine.dispose()
        span = (last - first).total_seconds()
        per_replica = [server.stored() for server in servers]
        return {"replicas": replicas, "events": stored, "span_s": span, "rate": stored / span,
                "publish_rate": publish_rate, "tickets": tickets, "per_replica": per_replica}
    finally:
        for server in servers:
            server.stop()
        drop_database(url, admin)


def main() -> None:
    print(f"replicas: {EVENTS:,} events on a 3-node RabbitMQ cluster, PostgreSQL; machine: {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RabbitCluster(Path(tmp) / "rabbitmq", nodes=3)
        cluster.start()
        try:
            declare_on(cluster.amqp_urls, QUEUE)
            for cameras in WORKLOADS:
                messages = make_messages(EVENTS, cameras)
                one = drain(cluster, 1, messages, Path(tmp))
                results.append((cameras, one, drain(cluster, 2, messages, Path(tmp))))
        finally:
            cluster.stop()
    print(table(["cameras", "replicas", "events", "drain s", "events/s", "stored per replica", "tickets",
                 "publish msg/s"],
                [[cameras, r["replicas"], r["events"], r["span_s"], r["rate"], r["per_replica"], r["tickets"],
                  r["publish_rate"]] for cameras, *pair in results for r in pair]))
    ratios = ", ".join(f"{cameras:,} cameras {two['rate']:,.0f} vs {one['rate']:,.0f} events/s = "
                       f"{two['rate'] / one['rate']:.2f}x" for cameras, one, two in results)
    print(f"summary: two replicas vs one: {ratios} (same run, 3-node cluster, PostgreSQL, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
