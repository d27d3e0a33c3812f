"""Courier by uniform on real footage, enrolment, and the gate command round trip through Mosquitto.

Acceptance 2: the ``hivis`` profile of issue 4 flags the worker in worker-zone-detection.gif and
nobody in the store aisle, the one-by-one clip or the walking clips. Acceptance 4: an allowed
courier's entry sends ``open`` on the node's commands topic and the gate controller's ack comes
back; a company outside the allowed list, or a time outside the window, sends nothing.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as paho
import pytest
import yaml
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import GateAck, GateAckStatus, GateCommand, now_utc
from gridwatch.broker.zones import GatePolicy
from gridwatch.edge.config import ConfigError, EdgeConfig, Uniform, catalogue, parse_config
from gridwatch.edge.delivery.gate import GateClient
from gridwatch.edge.evidence.snapshots import EvidenceStore
from gridwatch.edge.node import runner
from gridwatch.edge.node.cli import edge
from gridwatch.edge.perception.detect import OnnxDetector
from gridwatch.edge.perception.uniforms import COLOUR_ONLY_CAP, UniformMatcher
from gridwatch.edge.rules.gate_policy import check_code, entry_decision, issue_code
from tests.conftest import Mosquitto

HIVIS = {"id": "hivis", "name": {"zh-CN": "反光背心", "en": "Hi-vis vest"},
         "colours": ["#FF6A13"], "min_fraction": 0.25}
NOON = datetime(2025, 5, 1, 12, 0, tzinfo=UTC).astimezone()


def courier_config(source: Path, gate: dict | None = None, url: str = "mqtt://127.0.0.1:1883",
                   detect_fps: float = 10) -> EdgeConfig:
    rule = {"type": "courier", "uniforms": ["hivis"], **({"gate": gate} if gate else {})}
    return parse_config({
        "site_id": "demo", "node_id": "gate-north", "mqtt": {"url": url}, "uniforms": [HIVIS],
        "cameras": [{"id": "cam-1", "source": str(source), "detect_fps": detect_fps,
                     "zones": [{"id": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "rules": [rule]}]}],
    })


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    return runner.build_detector(courier_config(Path("unused")))


def replay(config: EdgeConfig, evidence: Path, detector: OnnxDetector, gate: GateClient | None = None,
           origin: datetime = NOON) -> list:
    camera = config.cameras[0]
    store = EvidenceStore(evidence)
    if gate is None:
        return runner.replay(config, camera, [], store, clock_origin=origin, detector=detector).events
    engine = runner.Engine(config, [], store, realtime=False, block=True, reconnect=False, detector=detector,
                           gate=gate)
    for pipeline in engine.pipelines:
        pipeline.clock_origin = origin
    engine.start()
    engine.finish()
    engine.stop()
    return engine.pipelines[0].events


def test_hivis_flags_the_worker_once(tmp_path: Path, samples: Path, detector: OnnxDetector) -> None:
    events = replay(courier_config(samples / "worker-zone-detection.gif"), tmp_path, detector)
    starts = [e for e in events if e.phase.value == "start"]
    assert len(starts) == 1, events
    entry = starts[0]
    assert entry.type.value == "courier_entry" and entry.attributes["uniform_id"] == "hivis"
    assert entry.attributes["score"] == COLOUR_ONLY_CAP and entry.attributes["agreeing"] >= 3
    assert entry.object is not None and entry.object.class_name == "person"
    for sha in (entry.snapshot.sha256, entry.attributes["crop_sha256"]):
        assert (tmp_path / f"{sha}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert [e.phase.value for e in events if e.incident_id == entry.incident_id] == ["start", "end"]


@pytest.mark.parametrize("clip", ["store-aisle-detection.gif", "face-demographics-walking.gif",
                                  "face-demographics-walking-and-pause.gif", "people-detection.gif",
                                  "one-by-one-person-detection.mp4"])
def test_hivis_flags_nobody_else(tmp_path: Path, samples: Path, detector: OnnxDetector, clip: str) -> None:
    fps = 2 if clip.endswith(".mp4") else 10  # 139 s of one-by-one: 2 detections/s still votes each visit
    assert replay(courier_config(samples / clip, detect_fps=fps), tmp_path, detector) == []


def people(samples: Path, detector: OnnxDetector, clip: str, frames: range) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, person box) for every clearly seen person in the given frames of a clip."""
    capture, found, index = cv2.VideoCapture(str(samples / clip)), [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index in frames:
            detections = detector.detect(image)
            found += [(image, box) for box in detections.boxes[(detections.class_ids == 0) & (detections.scores > 0.5)]]
        index += 1
    return found


def test_enrolment_from_a_clip_range_separates_the_vest_from_people_it_never_saw(
        tmp_path: Path, samples: Path, detector: OnnxDetector) -> None:
    profile = tmp_path / "site-vest.profile.json"
    result = CliRunner().invoke(edge, [
        "enroll-uniform", "--id", "site-vest", "--clip", str(samples / "worker-zone-detection.gif"),
        "--start", "0.3", "--end", "1.7", "--box", "0,0,1,1", "--out", str(profile), "--name-en", "Site vest",
        "--negatives", str(samples / "store-aisle-detection.gif"),
        "--negatives", str(samples / "face-demographics-walking.gif")])
    assert result.exit_code == 0, result.output
    assert re.search(r"cross-validated on \d+ uniform photos and \d+ site negatives: \d+% of held-out", result.stderr)
    entry = yaml.safe_load(result.stdout)["uniforms"][0]
    uniform = Uniform.model_validate(entry)
    assert uniform.profile == str(profile) and profile.is_file() and not uniform.colours
    from gridwatch.edge.perception.appearance import AppearanceEmbedder

    matcher = UniformMatcher([uniform], AppearanceEmbedder())
    held_out = people(samples, detector, "worker-zone-detection.gif", range(40, 71, 5))  # after 2.4 s
    assert len(held_out) >= 5
    assert all(matcher.match(image, box).uniform_id == "site-vest" for image, box in held_out)
    in_black = people(samples, detector, "face-demographics-walking-and-pause.gif", range(0, 130, 13))
    assert len(in_black) >= 10
    assert [matcher.match(image, box).uniform_id for image, box in in_black] == [None] * len(in_black)


ALL_CATALOGUE = sorted(catalogue())


def catalogue_config(source: Path, uniforms: list[str], detect_fps: float = 10) -> EdgeConfig:
    return parse_config({
        "site_id": "demo", "node_id": "gate-north",
        "cameras": [{"id": "cam-1", "source": str(source), "detect_fps": detect_fps, "zones": [{
            "id": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "rules": [{"type": "courier", "uniforms": uniforms}]}]}],
    })


def test_a_dark_uniform_cannot_be_enabled_without_enrolment(samples: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['sf'\] need enrolment photos"):
        catalogue_config(samples / "face-demographics-walking-and-pause.gif", ALL_CATALOGUE)
    with pytest.raises(ValueError, match="sf needs an enrolled profile"):
        UniformMatcher([catalogue()[u] for u in ALL_CATALOGUE])


@pytest.mark.parametrize("colour", ["#101010", "#F4F4F4", "#7F8082", "#1B1F3A"])
def test_a_colour_only_profile_in_black_white_or_grey_is_refused(colour: str) -> None:
    with pytest.raises(ValueError, match=r"is (near-black|near-white|grey): a colour-only profile"):
        Uniform(id="guard", name={"en": "Guard"}, colours=(colour,))


@pytest.mark.parametrize(("clip", "fps"), [("face-demographics-walking-and-pause.gif", 10),
                                           ("one-by-one-person-detection.mp4", 2)])
def test_the_catalogue_never_makes_a_courier_of_people_in_black(
        tmp_path: Path, samples: Path, detector: OnnxDetector, clip: str, fps: float) -> None:
    enabled = [u for u in ALL_CATALOGUE if not catalogue()[u].needs_enrolment]
    assert set(ALL_CATALOGUE) - set(enabled) == {"sf"}
    assert replay(catalogue_config(samples / clip, enabled, fps), tmp_path, detector) == []


def test_gate_policy_names_why_not() -> None:
    policy = GatePolicy(gate_id="gate-north", allowed=("meituan", "hivis"), windows=("07:00-22:00",))
    at = lambda hour: datetime(2025, 5, 1, hour, 30).astimezone()  # noqa: E731 (local time)
    assert entry_decision(policy, "hivis", at(12)).decision == "allowed"
    assert entry_decision(policy, "jd", at(12)).decision == "company_not_allowed"
    assert entry_decision(policy, "hivis", at(23)).decision == "outside_hours"
    night = GatePolicy(gate_id="g", allowed=("hivis",), windows=("22:00-06:00",))
    assert entry_decision(night, "hivis", at(3)).decision == "allowed"
    assert entry_decision(night, "hivis", at(12)).decision != "allowed"
    both = GatePolicy(gate_id="g", allowed=("hivis",), factors=("uniform", "code"))
    verdict = entry_decision(both, "hivis", at(12), None)
    assert verdict.decision == "no_code" and verdict.factors == {"uniform": "passed", "code": "no_code"}
    assert entry_decision(both, "hivis", at(12), "passed", "hivis").passed == ("uniform", "code")
    assert entry_decision(both, "hivis", at(12), "passed", "jd").factors["code"] == "company_not_allowed"


def test_rider_codes_are_signed_expire_and_open_once() -> None:
    now = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    code = issue_code("hivis", now + timedelta(minutes=10), "site-secret")
    assert check_code(code, "site-secret", now, set()) == ("passed", "hivis")
    assert check_code(code, "other-secret", now, set()) == ("invalid_code", None)
    assert check_code(code.replace("hivis", "meituan"), "site-secret", now, set()) == ("invalid_code", None)
    assert check_code("hello", "site-secret", now, set()) == ("invalid_code", None)
    assert check_code(code, "site-secret", now + timedelta(minutes=11), set()) == ("expired_code", "hivis")
    assert check_code(code, "site-secret", now, {code}) == ("replayed_code", "hivis")
    assert check_code(code, None, now, set()) == ("no_code_secret", "hivis")


class GateController:
    """Plays the gate: subscribes to the node's commands topic, acks every command it receives."""

    def __init__(self, url_port: int) -> None:
        self.commands: list[GateCommand] = []
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gate-controller")
        self.client.on_connect = lambda c, *_: c.subscribe(topics.node_commands_topic("demo", "gate-north"), qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, client, userdata, message) -> None:
        command = GateCommand.model_validate_json(message.payload)
        self.commands.append(command)
        ack = GateAck(command_id=command.command_id, gate_id=command.gate_id, status=GateAckStatus.DONE,
                      at=now_utc())
        client.publish(topics.node_command_ack_topic("demo", "gate-north"), ack.to_json(), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_gate_command_round_trip_through_mosquitto(mosquitto: Mosquitto) -> None:
    controller = GateController(mosquitto.port)
    gate = GateClient("demo", "gate-north", mosquitto.url)
    try:
        command = gate.open("gate-north", "0c4f2a9e8b7d6c5b4a39281706f5e4d3", "courier_entry hivis (score 1.0)")
        ack = gate.wait_ack(command.command_id, timeout_s=10)
        assert ack is not None and ack.status is GateAckStatus.DONE and ack.gate_id == "gate-north"
        assert [c.command_id for c in controller.commands] == [command.command_id]
        assert json.loads(controller.commands[0].to_json())["command"] == "open"
    finally:
        gate.close()
        controller.close()


@pytest.mark.parametrize(("allowed", "windows", "opens"), [
    (["hivis"], ["07:00-22:00"], True),
    (["meituan"], ["07:00-22:00"], False),   # a company outside the allowed list
    (["hivis"], ["00:00-06:00"], False),     # outside the time window (the clip plays at noon)
])
def test_courier_entry_opens_the_gate_only_when_allowed(
        tmp_path: Path, samples: Path, detector: OnnxDetector, mosquitto: Mosquitto,
        allowed: list[str], windows: list[str], opens: bool) -> None:
    controller = GateController(mosquitto.port)
    config = courier_config(samples / "worker-zone-detection.gif", url=mosquitto.url,
                            gate={"gate_id": "gate-north", "allowed": allowed, "windows": windows})
    gate = runner.gate_client(config)
    assert gate is not None
    try:
        events = replay(config, tmp_path, detector, gate=gate)
        starts = [e for e in events if e.phase.value == "start"]
        assert len(starts) == 1
        if opens:
            command_id = starts[0].attributes["gate_command_id"]
            ack = gate.wait_ack(command_id, timeout_s=10)
            assert ack is not None and ack.status is GateAckStatus.DONE
            assert [c.command_id for c in controller.commands] == [command_id]
            assert controller.commands[0].event_id == starts[0].event_id
        else:
            assert "gate_command_id" not in starts[0].attributes
            assert starts[0].attributes["gate_decision"] in {"company_not_allowed", "outside_hours"}
            # A command sent now arrives after any the replay sent (one connection, one topic, QoS 1).
            sentinel = gate.open("gate-north", None, "test sentinel")
            assert gate.wait_ack(sentinel.command_id, timeout_s=10) is not None
            assert [c.command_id for c in controller.commands] == [sentinel.command_id]
    finally:
        gate.close()
        controller.close()
