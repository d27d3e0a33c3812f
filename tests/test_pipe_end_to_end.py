"""The whole pipe on real parts: real clip -> real ONNX edge -> real broker -> server -> database -> REST.

Here through a Mosquitto the test starts from the project's config; the embedded broker that
`gridwatch demo` uses is exercised through the demo command itself (tests/test_demo_three_situations.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from gridwatch.server.registry.accounts import issue_token
from tests.conftest import REPO, Mosquitto, free_port
from tests.reliability_helpers import wait_for

DATA = Path(__file__).parent / "data"


def get(url: str, headers: dict[str, str]) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return response.read()


def get_json(url: str, headers: dict[str, str]):
    return json.loads(get(url, headers))


def test_replay_published_through_mosquitto_becomes_tickets(tmp_path: Path, samples: Path,
                                                             mosquitto: Mosquitto) -> None:
    from gridwatch.server.runner import ServerRunner
    from gridwatch.server.settings import ServerSettings

    server = ServerRunner(ServerSettings(data_dir=tmp_path / "server", mqtt_url=mosquitto.url, port=free_port()))
    server.start()
    try:
        api = f"http://127.0.0.1:{server.settings.port}"
        with server.app.state.sessions() as session:
            token = issue_token(session, "pipe-test", ["read"], server.app.state.clock.now())
            session.commit()
        auth = {"Authorization": f"Bearer {token}"}
        config = yaml.safe_load((DATA / "table-zone.yaml").read_text())
        config["mqtt"]["url"] = mosquitto.url
        config["server"] = {"url": api}
        config_path = tmp_path / "edge.yaml"
        config_path.write_text(yaml.safe_dump(config))
        events_out = tmp_path / "events.jsonl"
        result = subprocess.run(
            [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(config_path),
             "--source", str(samples / "one-by-one-person-detection.mp4"),
             "--events-out", str(events_out), "--publish"],
            capture_output=True, text=True, timeout=600, cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        published = [json.loads(line) for line in events_out.read_text().splitlines()]
        incidents = {e["incident_id"] for e in published}
        assert len(incidents) == 3  # p2, p3 and p5 stay longer than 15 s

        events = wait_for(lambda: get_json(f"{api}/api/events?limit=100", auth),
                      lambda page: len(page["items"]) == len(published), timeout=30)
        assert {e["event_id"] for e in events["items"]} == {e["event_id"] for e in published}
        tickets = get_json(f"{api}/api/tickets?limit=100", auth)["items"]
        assert {t["incident_id"] for t in tickets} == incidents
        for ticket in tickets:
            assert ticket["ended_at"] is not None
            assert get(f"{api}/api/snapshots/{ticket['snapshot_sha256']}", auth)[:3] == b"\xff\xd8\xff"
    finally:
        server.stop()
