"""A bad edge config exits non-zero with a message that names the field (founding issue, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GOOD = {
    "site_id": "demo-compound",
    "node_id": "gate-north",
    "mqtt": {"url": "mqtt://127.0.0.1:1883"},
    "cameras": [{
        "id": "cam-1",
        "source": "clip.mp4",
        "detect_fps": 5,
        "zones": [{
            "id": "lobby",
            "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]],
            "rules": [{"type": "loitering", "min_dwell_s": 60, "objects": ["person"]}],
        }],
    }],
}


def run_replay(tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def broken(mutate) -> dict:
    config = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(config)
    return config


def _zone(config: dict) -> dict:
    return config["cameras"][0]["zones"][0]


CASES = {
    "unknown rule type": (
        lambda c: _zone(c)["rules"][0].update(type="loiter"),
        "cameras[0].zones[0].rules[0].type: unknown rule type 'loiter'",
    ),
    "polygon with two points": (
        lambda c: _zone(c).update(polygon=[[0.1, 0.5], [0.9, 0.5]]),
        "cameras[0].zones[0].polygon: a polygon needs at least 3 points",
    ),
    "coordinate outside 0..1": (
        lambda c: _zone(c)["polygon"][2].__setitem__(0, 1.4),
        "cameras[0].zones[0].polygon[2][0]: Input should be less than or equal to 1",
    ),
    "missing source": (
        lambda c: c["cameras"][0].pop("source"),
        "cameras[0].source: Field required",
    ),
    "id usable as an MQTT wildcard": (
        lambda c: c.update(node_id="gate/#"),
        "node_id: String should match pattern",
    ),
    "unencoded # in a camera password": (
        lambda c: c["cameras"][0].update(source="rtsp://admin:Nvr#2024@192.168.1.64:554/Streaming/Channels/101"),
        "cameras[0].source: the URL's user or password holds a character that ends the address",
    ),
    "rtsp transport other than tcp or udp": (
        lambda c: c["cameras"][0].update(rtsp_transport="http"),
        "cameras[0].rtsp_transport: Input should be 'tcp' or 'udp'",
    ),
    "broker given as url and urls": (
        lambda c: c["mqtt"].update(urls=["mqtt://10.0.0.2:1883"]),
        "mqtt: set url (one broker) or urls (a list of brokers), not both",
    ),
    "second broker of the list not a broker URL": (
        lambda c: c.update(mqtt={"urls": ["mqtt://10.0.0.1:1883", "http://10.0.0.2:1883"]}),
        "mqtt.urls[1]: broker URL 'http://10.0.0.2:1883' must start with mqtt:// or mqtts://",
    ),
    "unknown key": (
        lambda c: c["cameras"][0].update(detect_fsp=5),
        "cameras[0].detect_fsp: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_names_the_field(tmp_path: Path, case: str) -> None:
    mutate, expected = CASES[case]
    result = run_replay(tmp_path, broken(mutate))
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_source_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_replay(tmp_path, GOOD)  # clip.mp4 does not exist beside the config
    assert result.returncode != 0
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("site_id: [unclosed\n")
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "not valid YAML" in result.stderr


def test_camera_url_error_never_repeats_the_password(tmp_path: Path) -> None:
    result = run_replay(tmp_path, broken(lambda c: c["cameras"][0].update(
        source="rtsp://admin:Nvr#2024@192.168.1.64:554/Streaming/Channels/101")))
    assert result.returncode != 0 and "percent-encode" in result.stderr
    assert "2024" not in result.stderr and "Nvr" not in result.stderr


def test_broker_url_error_never_repeats_the_password(tmp_path: Path) -> None:
    result = run_replay(tmp_path, broken(lambda c: c.update(mqtt={"urls": ["mqtt://edge:S3cret@10.0.0.1:1883/x"]})))
    assert result.returncode != 0 and "mqtt.urls[0]: broker URL 'mqtt://edge:***@10.0.0.1:1883/x'" in result.stderr
    assert "S3cret" not in result.stderr
