"""District scale on the clustered broker (issue 9): a three-node RabbitMQ cluster on loopback, two
real ``gridwatch server`` processes sharing ingest through its quorum queue on PostgreSQL, and
``gridwatch sim`` publishing 6,700 cameras' heartbeats and an event mix, time-compressed.

1. Everything up: 0 lost events, 0 duplicate tickets, every incident ticketed.
   (And the broker's key property on its own: a PUBACK means stored, even when the leader dies.)
2. The queue's leader node and one server replica are killed (SIGKILL) mid-run: still 0 lost and
   0 duplicate tickets; publishers fail over to another node and resend, the survivor takes over.

Sized for this 2-core machine (a few minutes each); the printed counts are the figures for
deploy/cluster/README.md. A missing rabbitmq-server or PostgreSQL fails, never skips.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url
from gridwatch.deploy.cluster.rabbitmq import BrokerMissing, RabbitCluster
from gridwatch.deploy.cluster.replica import ReplicaProcess
from gridwatch.deploy.sim import SimConfig, SimResult, check_database, run
from gridwatch.server.ingest.amqp_source import declare_on
from tests.conftest import ReportCounts, _fresh_postgres_database

pytestmark = pytest.mark.postgres

QUEUE = "gridwatch.events"
CAMERAS = 6700
DURATION_S = 45.0
TIME_FACTOR = 6.0  # 4.5 simulated minutes: every camera heartbeats ~9 times, ~1,300 status messages/s
INCIDENTS_PER_HOUR = 12_000.0  # simulated, a busy hour: ~800 incidents and ~8,400 events per run


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    try:
        broker = RabbitCluster(tmp_path_factory.mktemp("rabbitmq"), nodes=3)
    except BrokerMissing as exc:
        pytest.fail(str(exc))
    try:
        broker.start()
        declare_on(broker.amqp_urls, QUEUE)
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def cluster(running_cluster: RabbitCluster) -> RabbitCluster:
    """The module's cluster with every node a member again: a node killed by an earlier test rejoins first."""
    running_cluster.restore()
    return running_cluster


@pytest.fixture
def database() -> Iterator[str]:
    url, drop = _fresh_postgres_database()
    yield url
    drop()


def sim_config(broker: RabbitCluster, seed: int) -> SimConfig:
    return SimConfig(broker.mqtt_urls, cameras=CAMERAS, duration_s=DURATION_S, time_factor=TIME_FACTOR,
                     incidents_per_hour=INCIDENTS_PER_HOUR, burst_every_s=60.0, clients=6, seed=seed)


def replicas(broker: RabbitCluster, database_url: str, workdir: Path) -> list[ReplicaProcess]:
    started = [ReplicaProcess(i, broker, database_url, workdir, QUEUE) for i in range(2)]
    try:
        for replica in started:
            replica.start()
    except Exception:
        for replica in started:
            replica.stop()
        raise
    return started


def report(report_counts: ReportCounts, name: str, result: SimResult, replicas: list[ReplicaProcess],
           broker: RabbitCluster) -> None:
    """Print the run's counts; events still in the queue are listed apart, since queued is slow, not lost."""
    stored_by = [replica.stored() for replica in replicas]
    alive = [replica.running for replica in replicas]
    report_counts(f"[{name}] " + "; ".join([*result.lines(), f"stored per replica: {stored_by}",
                                           f"replicas alive: {alive}",
                                           f"still queued: {broker.queue_length(QUEUE)}"]))


def test_two_replicas_on_a_three_node_cluster_lose_and_duplicate_nothing(cluster: RabbitCluster, database: str,
                                                                          tmp_path: Path,
                                                                          report_counts: ReportCounts) -> None:
    servers = replicas(cluster, database, tmp_path)
    try:
        result = run(sim_config(cluster, seed=1), drain_s=60)
        counts = check_database(result, database, wait_s=120)
        report(report_counts, "all up", result, servers, cluster)
        assert result.heartbeats_sent >= CAMERAS * DURATION_S * TIME_FACTOR / 30 * 0.8
        assert len(result.sent) > 5000 and result.acknowledged == result.sent
        assert counts["lost"] == 0 and counts["stored"] == len(result.sent)
        assert counts["duplicate_tickets"] == 0
        assert counts["ticketed"] == counts["incidents"] == len(result.incidents)
        assert all((r.stored() or 0) > 0 for r in servers)  # both replicas took part
    finally:
        for server in servers:
            server.stop()


def test_a_puback_means_stored_even_when_the_queue_leader_dies(cluster: RabbitCluster,
                                                              report_counts: ReportCounts) -> None:
    """The property the broker was chosen for (deploy/cluster/README.md): QoS 1 messages published to
    one node while the quorum queue's leader is SIGKILLed are either acknowledged and stored, or not
    acknowledged (for the publisher to resend); never acknowledged and lost."""
    queue = f"probe-{uuid.uuid4().hex[:6]}"
    with pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls[0])) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue, "amq.topic", routing_key=f"{queue}.#")
    leader = cluster.queue_leader(queue)
    publisher_node = next(n for n in cluster.nodes if n is not leader)
    client = new_client(f"probe-{queue}")
    client.max_inflight_messages_set(100)
    connect_client(client, parse_mqtt_url(publisher_node.mqtt_url), blocking=True)
    client.loop_start()
    killer = threading.Timer(2.0, leader.kill)
    killer.start()
    infos = []
    try:
        for i in range(8000):
            infos.append(client.publish(f"{queue}/n/{i % 50}", str(i).encode(), qos=1))
            if i % 1000 == 999:
                time.sleep(0.2)
        deadline = time.monotonic() + 30
        while not all(info.is_published() for info in infos) and time.monotonic() < deadline:
            time.sleep(0.5)
        acknowledged = {i for i, info in enumerate(infos) if info.is_published()}
        killer.join()
        stored: set[int] = set()
        with pika.BlockingConnection(pika.URLParameters(publisher_node.amqp_url)) as connection:
            channel = connection.channel()
            for method, _properties, body in channel.consume(queue, inactivity_timeout=10):
                if method is None:
                    break
                stored.add(int(body))
                channel.basic_ack(method.delivery_tag)
            channel.queue_delete(queue)
        report_counts(f"[PUBACK vs stored, leader {leader.name} killed] published {len(infos):,}, "
              f"acknowledged {len(acknowledged):,}, stored {len(stored):,}, "
              f"acknowledged but not stored {len(acknowledged - stored)}")
        assert len(acknowledged) > 1000 and not leader.running
        assert acknowledged <= stored
    finally:
        client.disconnect()
        client.loop_stop()


def test_killing_a_broker_node_and_a_replica_mid_run_loses_and_duplicates_nothing(
        cluster: RabbitCluster, database: str, tmp_path: Path, report_counts: ReportCounts) -> None:
    servers = replicas(cluster, database, tmp_path)
    victim = cluster.queue_leader(QUEUE)
    killed: list[str] = []

    def chaos() -> None:
        time.sleep(DURATION_S * 0.35)
        victim.kill()
        killed.append(f"broker node {victim.name} (queue leader)")
        time.sleep(DURATION_S * 0.2)
        servers[1].kill()
        killed.append("server replica 1")

    try:
        killer = threading.Thread(target=chaos)
        killer.start()
        result = run(sim_config(cluster, seed=2), drain_s=90)
        killer.join()
        counts = check_database(result, database, wait_s=180)
        report(report_counts, f"killed {', '.join(killed)}", result, servers, cluster)
        assert len(killed) == 2 and result.failovers > 0
        assert len(result.sent) > 5000 and result.acknowledged == result.sent
        assert counts["lost"] == 0 and counts["stored"] == len(result.sent)
        assert counts["duplicate_tickets"] == 0
        assert counts["ticketed"] == counts["incidents"] == len(result.incidents)
        assert (servers[0].stored() or 0) > 0
    finally:
        for server in servers:
            server.stop()
