"""``gridwatch server`` as users run it, and the settings it is built from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gridwatch.broker import topics
from gridwatch.server.settings import ServerSettings
from tests.conftest import free_port

SERVER_ONLY_MODULES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "pydantic_settings")


def test_the_cli_module_loads_without_the_server_extra() -> None:
    """Edge boxes install without FastAPI/SQLAlchemy: importing the command must not need them."""
    code = (
        "import sys, json, gridwatch.server.cli as c; "
        f"print(json.dumps([m for m in {SERVER_ONLY_MODULES!r} if m in sys.modules] + [c.server.name]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["server"]


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("GRIDWATCH_") and name not in ("GRIDWATCH_SHARED", "GRIDWATCH_TEST_PG_URL"):
            monkeypatch.delenv(name)
    defaults = ServerSettings()
    assert defaults.mqtt_url == "mqtt://127.0.0.1:1883"
    assert defaults.mqtt_client_id == "gridwatch-server"
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8000)
    assert defaults.events_subscription == topics.EVENTS_SUBSCRIPTION
    assert defaults.database_url == f"sqlite:///{(Path('gridwatch-data') / 'gridwatch.db').resolve()}"

    monkeypatch.setenv("GRIDWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GRIDWATCH_PORT", "9100")
    monkeypatch.setenv("GRIDWATCH_MQTT_URL", "mqtt://broker.lan:1884")
    from_env = ServerSettings()
    assert from_env.port == 9100 and from_env.mqtt_url == "mqtt://broker.lan:1884"
    assert from_env.database_url == f"sqlite:///{(tmp_path / 'gridwatch.db').resolve()}"
    assert from_env.snapshots_dir == tmp_path / "snapshots"
    assert ServerSettings(port=9200).port == 9200  # explicit values (CLI options) win over the env


@pytest.mark.mosquitto
def test_gridwatch_server_serves_and_stops_cleanly(mosquitto, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDWATCH_")}
    gridwatch = Path(sys.executable).with_name("gridwatch")
    proc = subprocess.Popen(
        [str(gridwatch), "server", "--port", str(port), "--mqtt-url", mosquitto.url,
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                if health["mqtt"]["subscribed"]:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert health is not None and health["mqtt"]["subscribed"], f"server did not come up: {health}"
        assert health["database"]["backend"] == "sqlite"
        assert (tmp_path / "data" / "gridwatch.db").is_file()
        assert "网格工单" in httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it so the exit status says so.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
