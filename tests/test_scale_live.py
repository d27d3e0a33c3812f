"""Live updates across server replicas: two real ``gridwatch server`` processes on one PostgreSQL
database, each ingesting a different site from a real Mosquitto; a console on either replica hears
what the other one ingested (LISTEN/NOTIFY, server/api/live.py). Also the probes a Kubernetes
Deployment uses (/healthz, /readyz) on both replicas, started at the same moment as an orchestrator
would start them.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from gridwatch.broker import topics
from gridwatch.server.api.live import NOTIFY_MAX_BYTES, Notice
from tests.auth_helpers import PASSWORD, login
from tests.conftest import Mosquitto, _fresh_postgres_database, free_port
from tests.reliability_helpers import wait_for
from tests.test_server_api import make_event, read_sse

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto]


@dataclass
class Replica:
    """One ``gridwatch server`` process ingesting only ``site``'s events, and its live stream."""

    name: str
    site: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    heard: queue.Queue[dict[str, str]] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listen(self) -> None:
        """Open the console's SSE stream as admin; every message goes into ``heard``."""
        subscribed = threading.Event()

        def run() -> None:
            with contextlib.closing(login(self.url, "admin")) as http, \
                    http.stream("GET", "/api/stream", timeout=None) as stream:
                lines = stream.iter_lines()
                assert next(lines) == "retry: 3000"
                subscribed.set()
                with contextlib.suppress(AssertionError, httpx.HTTPError):
                    while True:
                        self.heard.put(read_sse(lines))

        threading.Thread(target=run, name=f"sse-{self.name}", daemon=True).start()
        assert subscribed.wait(15), f"replica {self.name}: the live stream did not open"

    def next_message(self, timeout: float = 10.0) -> dict[str, str]:
        try:
            return self.heard.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"replica {self.name} heard nothing within {timeout}s; log:\n"
                                 f"{self.log_path.read_text()[-3000:]}") from None


def start_replica(name: str, site: str, database_url: str, mqtt_url: str, workdir: Path) -> Replica:
    port = free_port()
    log_path = workdir / f"server-{name}.log"
    env = {**os.environ,
           "GRIDWATCH_DATABASE_URL": database_url,
           "GRIDWATCH_MQTT_URL": mqtt_url,
           "GRIDWATCH_MQTT_CLIENT_ID": f"gridwatch-server-{name}",
           "GRIDWATCH_EVENTS_SUBSCRIPTION": f"gridwatch/v1/{site}/+/+/events",
           "GRIDWATCH_DATA_DIR": str(workdir / f"data-{name}"),
           "GRIDWATCH_PORT": str(port),
           "GRIDWATCH_ADMIN_PASSWORD": PASSWORD}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "server"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return Replica(name, site, port, proc, log_path)


def probe(replica: Replica, path: str) -> int:
    try:
        return httpx.get(f"{replica.url}{path}", timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Mosquitto, list[Replica], str]]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    database_url, drop = _fresh_postgres_database()
    # Both at once, as a Deployment starts its pods: each migrates the same empty database.
    started = [start_replica("a", "site-a", database_url, broker.url, tmp_path),
               start_replica("b", "site-b", database_url, broker.url, tmp_path)]
    try:
        for replica in started:
            status = wait_for(lambda r=replica: probe(r, "/readyz"), lambda code: code == 200, timeout=60)
            assert status == 200, f"replica {replica.name} not ready: {replica.log_path.read_text()[-3000:]}"
        yield broker, started, database_url
    finally:
        for replica in started:
            replica.proc.terminate()
        for replica in started:
            try:
                replica.proc.wait(20)
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                replica.proc.wait(10)
        broker.stop()
        drop()


def publish(broker: Mosquitto, site: str) -> str:
    """One loitering start for ``site`` over MQTT QoS 1, as an edge box sends it; returns its event_id."""
    event = make_event("cam-9").model_copy(update={"site_id": site})
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-edge-{site}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        info = client.publish(topics.events_topic(site, event.node_id, event.camera_id), event.to_json(), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()
    return event.event_id


def expect_ticket_messages(replica: Replica, event_id: str, site: str) -> int:
    """The three messages a console hears for a new incident, in order; returns the ticket id."""
    message = replica.next_message()
    assert message["event"] == "event", message
    assert json.loads(message["data"])["event_id"] == event_id
    message = replica.next_message()
    assert message["event"] == "ticket", message
    ticket = json.loads(message["data"])
    assert ticket["action"] == "created" and ticket["ticket"]["site_id"] == site
    message = replica.next_message()
    assert message["event"] == "transition", message
    opened = json.loads(message["data"])
    assert opened["action"] == "open" and opened["ticket_id"] == ticket["ticket"]["id"]
    return ticket["ticket"]["id"]


def test_each_replica_hears_what_the_other_ingested(replicas: tuple[Mosquitto, list[Replica], str]) -> None:
    broker, (a, b), database_url = replicas
    for replica in (a, b):
        assert probe(replica, "/healthz") == 200
        replica.listen()

    event_a = publish(broker, "site-a")  # only replica A subscribes to site-a
    ticket_on_b = expect_ticket_messages(b, event_a, "site-a")
    assert expect_ticket_messages(a, event_a, "site-a") == ticket_on_b  # the sender hears it the same way

    event_b = publish(broker, "site-b")  # only replica B subscribes to site-b
    ticket_on_a = expect_ticket_messages(a, event_b, "site-b")
    assert expect_ticket_messages(b, event_b, "site-b") == ticket_on_a
    assert ticket_on_a != ticket_on_b

    # Exactly once per replica: nothing else arrives (no echo, no second copy from the other replica).
    time.sleep(1.0)
    assert a.heard.empty() and b.heard.empty()
    # Each ticket was ingested by its own replica only; both replicas serve both (shared database).
    for replica in (a, b):
        with contextlib.closing(login(replica.url, "admin")) as http:
            sites = sorted(t["site_id"] for t in http.get("/api/tickets").json()["items"])
        assert sites == ["site-a", "site-b"]

    # The listening connections are cut (a PostgreSQL restart or failover): each replica reconnects.
    admin = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            cut = conn.scalar(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN %'"))
    finally:
        admin.dispose()
    assert cut == 2
    for replica in (a, b):
        assert wait_for(lambda r=replica: probe(r, "/readyz"), lambda code: code == 200, timeout=30) == 200
    event_a = publish(broker, "site-a")  # the same camera and zone: it joins the open ticket
    message = b.next_message()
    assert message["event"] == "event" and json.loads(message["data"])["event_id"] == event_a
    message = b.next_message()
    assert message["event"] == "ticket" and json.loads(message["data"])["ticket"]["id"] == ticket_on_b


def test_readyz_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    """A replica whose database is dropped under it stays alive (/healthz) but leaves the load balancer (/readyz)."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    database_url, drop = _fresh_postgres_database()
    replica = start_replica("solo", "site-a", database_url, broker.url, tmp_path)
    try:
        assert wait_for(lambda: probe(replica, "/readyz"), lambda code: code == 200, timeout=60) == 200
        drop()  # DROP DATABASE ... WITH (FORCE): every connection of the replica is cut
        assert wait_for(lambda: probe(replica, "/readyz"), lambda code: code == 503, timeout=20) == 503
        assert probe(replica, "/healthz") == 200
    finally:
        replica.proc.terminate()
        try:
            replica.proc.wait(20)
        except subprocess.TimeoutExpired:
            replica.proc.kill()
        broker.stop()


def test_a_large_notice_is_split_under_the_notify_limit_in_order() -> None:
    notice = Notice(events=[f"event-{i:05d}-{'x' * 40}" for i in range(400)],
                    tickets=[(i, i % 3 == 0) for i in range(1, 300)], transitions=list(range(1, 900)))
    chunks = list(notice.chunks())
    assert len(chunks) > 2
    assert all(len(chunk.to_json().encode()) <= NOTIFY_MAX_BYTES for chunk in chunks)
    rejoined = [Notice.from_json(chunk.to_json()) for chunk in chunks]
    assert [e for c in rejoined for e in c.events] == notice.events
    assert [t for c in rejoined for t in c.tickets] == notice.tickets
    assert [x for c in rejoined for x in c.transitions] == notice.transitions
    # Order across chunks: no chunk carries events after one that carried tickets or transitions.
    kinds = [kind for c in rejoined for kind, items in (("e", c.events), ("t", c.tickets), ("x", c.transitions))
             if items]
    assert kinds == sorted(kinds, key="etx".index)
