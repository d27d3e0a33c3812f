"""Deployment files: every sample config validates, and the systemd unit is sound and sandboxed.

The samples are what installers copy; one that does not load would be found on a ladder at a gate.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from gridwatch.edge.config import load_config
from tests.conftest import REPO

SAMPLES = sorted((REPO / "deploy" / "edge-samples").glob("*.yaml"))
UNIT = REPO / "deploy" / "systemd" / "gridwatch-edge.service"
STATE_DIR = "/var/lib/gridwatch-edge"


def unit_sections() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)  # systemd repeats some keys
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_there_is_a_sample_per_camera_role() -> None:
    assert {p.stem for p in SAMPLES} >= {"gate", "lane", "lobby"}


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_config_validates_and_keeps_state_where_the_unit_may_write(sample: Path) -> None:
    config = load_config(sample)
    assert config.cameras and all(camera.zones for camera in config.cameras)
    for path in (config.outbox.path, config.evidence.dir):  # the config's folder is read-only under the unit
        assert path.startswith(STATE_DIR + "/"), path
    assert config.metrics.host == "127.0.0.1"  # not on the LAN unless an installer decides so


def test_unit_restarts_on_failure_inside_a_sandbox() -> None:
    service = unit_sections()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith("gridwatch edge run --config /etc/gridwatch/edge.yaml")
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "ReadWritePaths": STATE_DIR, "StateDirectory": "gridwatch-edge",
                       "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    assert service["User"] != "root"


def test_systemd_accepts_the_unit() -> None:
    """`systemd-analyze verify`: the only complaint allowed is the binary missing on this machine."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is required to check the unit (apt-get install systemd)")
    result = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=30)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]
    assert complaints == []
