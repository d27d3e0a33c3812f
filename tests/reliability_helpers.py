"""Real parts for the edge fault tests: a server with a token, an edge config pointed at them, a replay.

Shared by tests/test_edge_reliability_*.py so each fault test reads as its timeline only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, free_port

DATA = Path(__file__).parent / "data"
CLIP = "one-by-one-person-detection.mp4"


class Server:
    """An in-process GridWatch server on its own data dir, and a token that reads and uploads."""

    def __init__(self, data_dir: Path, mqtt_url: str, database_url: str = "") -> None:
        """``database_url``: empty for a SQLite file in ``data_dir``; replicas share a PostgreSQL one."""
        from gridwatch.server.registry.accounts import issue_token
        from gridwatch.server.runner import ServerRunner
        from gridwatch.server.settings import ServerSettings

        self.runner = ServerRunner(ServerSettings(data_dir=data_dir, mqtt_url=mqtt_url, port=free_port(),
                                                    database_url=database_url))
        self.runner.start()
        self.api = f"http://127.0.0.1:{self.runner.settings.port}"
        state = self.runner.app.state
        with state.sessions() as session:
            self.token = issue_token(session, f"reliability-test-{data_dir.name}", ["read", "snapshots:write"],
                                     state.clock.now())
            session.commit()

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.api}{path}", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def events(self) -> list[dict]:
        return self.get("/api/events?limit=500")["items"]

    def tickets(self) -> list[dict]:
        return self.get("/api/tickets?limit=100")["items"]

    def stop(self) -> None:
        self.runner.stop()


def edge_config(directory: Path, mqtt_url: str, server: Server | None, **extra: Any) -> Path:
    """tests/data/table-zone.yaml pointed at this broker and server, its outbox in ``directory``."""
    config = yaml.safe_load((DATA / "table-zone.yaml").read_text())
    config["mqtt"] = {"url": mqtt_url, "reconnect_max_s": 2}
    if server is not None:
        config["server"] = {"url": server.api, "token": server.token}
    config["metrics"] = {"port": 0}
    config.update(extra)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_replay(config: Path, clip: Path, events_out: Path, start_time: str, drain_s: float) -> subprocess.Popen:
    """`gridwatch edge replay --publish` as its own process, as an installer would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(config), "--source", str(clip),
         "--events-out", str(events_out), "--publish", "--start-time", start_time, "--drain-s", str(drain_s)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float, period: float = 0.2) -> Any:
    """Poll ``fetch`` until ``done`` holds or time is up; return the last value (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = fetch()
            if done(value):
                return value
        except OSError:
            pass
        time.sleep(period)
    return value


def ticket_shape(tickets: list[dict]) -> list[tuple]:
    """What must match between two runs of the same clip: ids are random, times come from the clip."""
    return sorted((t["type"], t["camera_id"], t["zone_id"], t["opened_at"], t["ended_at"], t["event_count"])
                  for t in tickets)


def counts_line(published: list[dict], delivered: list[dict], raw_deliveries: int) -> str:
    """published / delivered (distinct at the server) / duplicates (the broker delivered twice) / lost."""
    ids = {e["event_id"] for e in published}
    got = {e["event_id"] for e in delivered}
    return (f"published {len(ids)}, delivered {len(got & ids)}, duplicates at the broker "
            f"{max(0, raw_deliveries - len(got))}, duplicates stored {len(delivered) - len(got)}, "
            f"lost {len(ids - got)}")
