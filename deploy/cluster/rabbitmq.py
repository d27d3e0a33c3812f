"""Write the configs for an N-node RabbitMQ cluster with the MQTT plugin and run it on loopback.

Tests, the replica benchmark and a developer (``python -m gridwatch.deploy.cluster.rabbitmq --nodes 3``)
start the same cluster from this one place, so the configuration proved here is the one documented in
``deploy/cluster/README.md``. Every node has an MQTT listener for the edge boxes and an AMQP listener for
the server replicas; events go from the MQTT plugin into ``amq.topic`` and from there into one quorum
queue (:mod:`gridwatch.server.ingest.amqp_source`), replicated on three nodes, which the replicas share.

Each cluster gets its own Erlang cookie and node names (``gw<random>-<n>@localhost``), so several
clusters (parallel tests) and the machine's own RabbitMQ never join each other.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 120.0
# A killed node rejoining replays its quorum-queue log first: slower than a first start on a busy box.
RESTORE_TIMEOUT_S = 300.0


class BrokerMissing(RuntimeError):
    """RabbitMQ (with its MQTT plugin) is not installed: ``apt-get install rabbitmq-server``."""


def rabbitmq_binary() -> Path:
    """The real server script (not Debian's wrapper, which insists on switching to user rabbitmq)."""
    script = RABBITMQ_BIN / "rabbitmq-server"
    if not script.exists():
        found = shutil.which("rabbitmq-server")
        if found is None:
            raise BrokerMissing("rabbitmq-server is required for the clustered broker "
                                "(apt-get install rabbitmq-server)")
        script = Path(found)
    return script


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RabbitNode:
    """One cluster member: its name, ports, directory and (while it runs) its process."""

    name: str
    amqp_port: int
    mqtt_port: int
    dist_port: int
    workdir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def write_config(self, peers: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"# GridWatch clustered broker node {self.name} (written by gridwatch.deploy.cluster.rabbitmq)",
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}",
            "mqtt.allow_anonymous = true",  # loopback development cluster; a site uses users (deploy/cluster/README.md)
            "mqtt.exchange = amq.topic",
            "loopback_users = none",
            "cluster_formation.peer_discovery_backend = classic_config",
            *[f"cluster_formation.classic_config.nodes.{i + 1} = {peer}" for i, peer in enumerate(peers)],
            # A minority node stops serving rather than accepting writes it cannot replicate.
            "cluster_partition_handling = pause_minority",
            "log.file.level = warning",
            "log.console = false",
        ]
        (self.workdir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("# the machine's /etc/rabbitmq/rabbitmq-env.conf is not read\n")

    def environment(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "HOME": str(home),  # where the cluster's .erlang.cookie is
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.workdir / "pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def start(self, home: Path) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(rabbitmq_binary())], stdout=log, stderr=log, env=self.environment(home),
                                         start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole node (the Erlang VM and its helpers): a crash, not a clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(15)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(15)
        self.proc = None


class RabbitCluster:
    """``nodes`` RabbitMQ nodes on loopback forming one cluster; a context manager.

    The first node starts alone and the others join it (starting them all at once lets two of them
    race to form separate clusters). ``start()`` returns when every node listens on AMQP and MQTT
    and the cluster has all its members.
    """

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise ValueError(f"nodes: need at least 1, got {nodes}")
        rabbitmq_binary()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cookie = workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        prefix = f"gw{secrets.token_hex(3)}"
        ports = free_ports(3 * nodes)
        self.nodes = [RabbitNode(f"{prefix}-{i + 1}@localhost", *ports[3 * i:3 * i + 3], workdir / f"n{i + 1}")
                      for i in range(nodes)]
        names = [n.name for n in self.nodes]
        for node in self.nodes:
            node.write_config(names)

    @property
    def amqp_urls(self) -> list[str]:
        return [n.amqp_url for n in self.nodes]

    @property
    def mqtt_urls(self) -> list[str]:
        return [n.mqtt_url for n in self.nodes]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        self.nodes[0].start(self.workdir)
        self._wait_listening(self.nodes[0], deadline)
        for node in self.nodes[1:]:
            node.start(self.workdir)
        for node in self.nodes[1:]:
            self._wait_listening(node, deadline)
        self.wait_members(len(self.nodes), deadline)

    def _wait_listening(self, node: RabbitNode, deadline: float) -> None:
        while not (listening(node.amqp_port) and listening(node.mqtt_port)):
            if not node.running:
                raise RuntimeError(f"RabbitMQ node {node.name} exited while starting; see {node.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ node {node.name} did not listen in time; see {node.log_path}")
            time.sleep(0.2)

    def ctl(self, *args: str) -> object | None:
        """``rabbitmqctl <args> --formatter json`` on the first live node that answers; None if none does.

        A node whose process runs may still be booting (or rejoining after a kill), so each running
        node is asked in turn rather than only the first."""
        for node in (n for n in self.nodes if n.running):
            try:
                out = subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.name, *args, "--formatter",
                                      "json"], env=node.environment(self.workdir), capture_output=True, text=True,
                                     timeout=60)
            except subprocess.TimeoutExpired:
                continue
            if out.returncode == 0:
                return json.loads(out.stdout)
        return None

    def running_members(self) -> list[str]:
        """The cluster's running nodes as one live node sees them."""
        status = self.ctl("cluster_status")
        return list(status.get("running_nodes", [])) if isinstance(status, dict) else []

    def queue_leader(self, queue: str, timeout: float = 60.0) -> RabbitNode:
        """The node leading a quorum queue (where killing hurts most). Right after a node rejoins, the
        queue may have no elected leader for a moment, so this waits for one."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.ctl("list_queues", "name", "leader")
            leader = next((row["leader"] for row in rows or [] if row["name"] == queue), None)
            node = next((n for n in self.nodes if n.name == leader), None)
            if node is not None:
                return node
            if time.monotonic() > deadline:
                raise TimeoutError(f"quorum queue {queue} has no leader among {[n.name for n in self.nodes]}; "
                                   f"see {self.workdir}")
            time.sleep(1)

    def queue_length(self, queue: str) -> int:
        rows = self.ctl("list_queues", "name", "messages")
        return int(next(row["messages"] for row in rows or [] if row["name"] == queue))

    def wait_members(self, count: int, deadline: float) -> None:
        while len(self.running_members()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the RabbitMQ cluster did not reach {count} running nodes; see {self.workdir}")
            time.sleep(1)

    def restore(self, timeout: float = RESTORE_TIMEOUT_S) -> None:
        """Restart every node that is down (a test killed it) and wait until all are members again, so a
        fault injected by one test never leaks into the next."""
        for node in self.nodes:
            if not node.running:
                node.start(self.workdir)
        self.wait_members(len(self.nodes), time.monotonic() + timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RabbitCluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    """Run a cluster in the foreground for a developer; Ctrl-C stops it."""
    from gridwatch.server.ingest.amqp_source import declare_on
    from gridwatch.server.settings import ServerSettings

    parser = argparse.ArgumentParser(description="A RabbitMQ + MQTT cluster on loopback")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("gridwatch-cluster"))
    args = parser.parse_args()
    cluster = RabbitCluster(args.dir.resolve(), args.nodes)
    cluster.start()
    declare_on(cluster.amqp_urls, ServerSettings.model_fields["amqp_queue"].default)
    print("MQTT (edge boxes):", ",".join(cluster.mqtt_urls))
    print("AMQP (server replicas, GRIDWATCH_AMQP_URLS):", ",".join(cluster.amqp_urls))
    try:
        while any(n.running for n in cluster.nodes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
