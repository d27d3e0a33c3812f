"""A ``gridwatch server`` replica as its own process, consuming the cluster's shared events queue.

The scale tests and the replica benchmark run real server processes (their own interpreter, so two
replicas really use two cores), configured only through ``GRIDWATCH_*`` environment variables as
a deployment would configure them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gridwatch.deploy.cluster.rabbitmq import RabbitCluster, free_ports

START_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 3


class ReplicaProcess:
    """Replica ``index`` of a server on ``database_url``; its AMQP node list starts at a different
    node per replica, and its MQTT side (camera status, transitions) uses node ``index``."""

    def __init__(self, index: int, cluster: RabbitCluster, database_url: str, workdir: Path, queue: str) -> None:
        self.index = index
        self.port = free_ports(1)[0]
        urls = cluster.amqp_urls[index:] + cluster.amqp_urls[:index]
        self.env = dict(
            os.environ, GRIDWATCH_INGEST_SOURCE="amqp", GRIDWATCH_AMQP_URLS=",".join(urls), GRIDWATCH_AMQP_QUEUE=queue,
            GRIDWATCH_DATABASE_URL=database_url, GRIDWATCH_MQTT_URL=cluster.mqtt_urls[index % len(cluster.nodes)],
            GRIDWATCH_MQTT_CLIENT_ID=f"gridwatch-server-{index}", GRIDWATCH_DATA_DIR=str(workdir / f"replica-{index}"),
            GRIDWATCH_PORT=str(self.port))
        self.log = workdir / f"replica-{index}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and return once its ingest consumes the queue.

        A free port is only free until someone else binds it (a broker node's connections, the other
        replica picking the same one): when the server cannot bind, it starts again on a new port."""
        for _attempt in range(PORT_ATTEMPTS):
            if self._start_once():
                return
            self.port = free_ports(1)[0]
            self.env["GRIDWATCH_PORT"] = str(self.port)
        raise RuntimeError(f"replica {self.index} found no free port in {PORT_ATTEMPTS} attempts; see {self.log}")

    def _start_once(self) -> bool:
        """True once consuming; False when the port was taken; raises on any other failure."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logged_before = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "server"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                with open(self.log, "rb") as log:
                    log.seek(logged_before)
                    if b"address already in use" in log.read():
                        return False
                raise RuntimeError(f"replica {self.index} exited with {self.proc.returncode}; see {self.log}")
            try:
                if self.health()["mqtt"]["subscribed"]:
                    return True
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {self.index} not consuming after {START_TIMEOUT_S}s; see {self.log}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict:
        return httpx.get(f"{self.url}/api/health", timeout=5).json()

    def stored(self) -> int | None:
        """Events this replica stored since it started; None once it is gone."""
        try:
            return int(self.health()["mqtt"]["stored"])
        except (httpx.HTTPError, OSError):
            return None

    def kill(self) -> None:
        """SIGKILL: a crashed replica, whose unacknowledged messages go back to the queue."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
