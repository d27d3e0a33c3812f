"""``gridwatch broker``: schema generation/check, the topic listing, and ``run`` as a real process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from gridwatch.broker import topics
from gridwatch.broker.cli import broker
from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url
from gridwatch.broker.schemas import SCHEMA_DIR, render, schema_documents


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(broker, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_committed_schemas_pass_check() -> None:
    code, out, err = invoke("schemas", "--check")
    assert code == 0, err
    assert str(SCHEMA_DIR) in out


def test_schemas_write_then_check(tmp_path: Path) -> None:
    code, out, _ = invoke("schemas", "--dir", str(tmp_path))
    assert code == 0
    docs = schema_documents()
    assert {p.name for p in tmp_path.iterdir()} == set(docs)
    for name, doc in docs.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == render(doc)
        assert name in out
    assert invoke("schemas", "--check", "--dir", str(tmp_path))[0] == 0


def test_schemas_check_names_drift_and_writes_nothing(tmp_path: Path) -> None:
    invoke("schemas", "--dir", str(tmp_path))
    edited = tmp_path / "event.v1.json"
    edited.write_text(edited.read_text().replace("loitering", "lurking"), encoding="utf-8")
    (tmp_path / "node-status.v1.json").unlink()
    (tmp_path / "legacy.v0.json").write_text("{}", encoding="utf-8")

    code, _, err = invoke("schemas", "--check", "--dir", str(tmp_path))
    assert code == 1
    assert "event.v1.json: differs" in err
    assert "node-status.v1.json: missing" in err
    assert "legacy.v0.json: not generated" in err
    assert "camera-status.v1.json" not in err
    assert "lurking" in edited.read_text()  # --check never writes
    assert not (tmp_path / "node-status.v1.json").exists()


def test_topics_lists_every_channel_and_the_subscriptions() -> None:
    from gridwatch.broker.asyncapi.channels import CHANNELS

    code, out, _ = invoke("topics")
    assert code == 0
    assert "gridwatch/v1/{site_id}/{node_id}/{camera_id}/events" in out
    assert out.count("    payload  ") == len(CHANNELS)
    assert topics.EVENTS_SUBSCRIPTION in out
    assert all(sub in out for sub in topics.STATUS_SUBSCRIPTIONS)


def test_topics_json_matches_the_asyncapi_channels() -> None:
    from gridwatch.broker.asyncapi.channels import CHANNELS

    code, out, _ = invoke("topics", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [t["payload"] for t in doc["topics"]] == [f"{c.payload}.v1.json" for c in CHANNELS]
    events = [t for t in doc["topics"] if t["topic"].endswith("/events")]
    assert len(events) == 1 and events[0]["qos"] == 1 and events[0]["retained"] is False
    assert doc["subscriptions"]["events"] == topics.EVENTS_SUBSCRIPTION


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_signalled(stop_signal: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gridwatch.broker.cli import broker; broker()", "run", "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        match = re.search(r"mqtt://127\.0\.0\.1:\d+", banner)
        assert match, f"no URL in {banner!r}"

        received = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *args: c.subscribe("gridwatch/#", qos=1)
        client.on_subscribe = lambda c, *args: c.publish("gridwatch/v1/s/n/status", "online", qos=1)
        client.on_message = lambda *args: received.set()
        connect_client(client, parse_mqtt_url(match.group()), blocking=True)
        client.loop_start()
        try:
            assert received.wait(5), "no round trip through the running broker"
        finally:
            client.disconnect()
            client.loop_stop()

        proc.send_signal(stop_signal)
        assert proc.wait(timeout=5) == 0
        assert "broker stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_amqtt_only_run_needs_the_extra() -> None:
    """An edge box without the broker extra still gets the contract commands and a clear hint."""
    no_amqtt = "import sys; sys.modules['amqtt'] = None; from gridwatch.broker.cli import broker; broker()"
    topics_run = subprocess.run([sys.executable, "-c", no_amqtt, "topics"], capture_output=True, text=True,
                                timeout=30)
    assert topics_run.returncode == 0, topics_run.stderr
    broker_run = subprocess.run([sys.executable, "-c", no_amqtt, "run", "--port", "0"], capture_output=True,
                                text=True, timeout=30)
    assert broker_run.returncode == 1
    assert "install gridwatch[broker]" in broker_run.stderr
