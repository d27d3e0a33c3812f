"""Zones saved in the console reach a running edge node over MQTT (issue 8: the camera-config topic).

Real parts only: a Mosquitto from the conftest fixture, the server's zone save API on each database,
and a live node (``LiveNode``: reader, scheduler, YOLOX on the sample clip in real time) whose
pipeline must end up with the console's zones without reopening its stream; a payload that is not
a valid config, an older version, or one that needs a restart is ignored and the zones stay.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraConfig
from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url
from gridwatch.edge.config import load_config
from gridwatch.edge.node.reload import ConfigReloader
from gridwatch.edge.node.runner import LiveNode, evidence_store, mqtt_publisher
from tests.auth_helpers import add_account, login
from tests.conftest import Mosquitto, free_port
from tests.reliability_helpers import CLIP, edge_config, wait_for

SITE, NODE, CAMERA = "demo-compound", "gate-north", "cam-1"  # as in tests/data/table-zone.yaml
# The whole frame, armed after one second: whoever walks through the clip is soon "loitering" here.
EVERYWHERE = {"id": "everywhere", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
              "rules": [{"type": "loitering", "min_dwell_s": 1, "update_every_s": 5}]}
DOORWAY = {"id": "doorway", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]],
           "rules": [{"type": "loitering", "min_dwell_s": 30}]}


@dataclass
class Node:
    live: LiveNode
    config_path: Path

    @property
    def zone_ids(self) -> list[str]:
        return [zone.id for zone in self.live.engine.pipelines[0].camera.zones]

    def wait_zones(self, ids: list[str], timeout: float = 15) -> list[str]:
        return wait_for(lambda: self.zone_ids, lambda got: got == ids, timeout)


@contextlib.contextmanager
def running_node(tmp_path: Path, samples: Path, mosquitto: Mosquitto,
                 caplog: pytest.LogCaptureFixture) -> Iterator[Node]:
    """A live node on the sample clip (looping, real time), connected to ``mosquitto``; INFO logs captured."""
    caplog.set_level(logging.INFO)
    path = edge_config(tmp_path / "edge", mosquitto.url, None)
    data = yaml.safe_load(path.read_text())
    data["cameras"][0].update(source=str(samples / CLIP), loop=True)
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    publisher = mqtt_publisher(config, path.parent)
    live = LiveNode(config, evidence_store(config, path.parent), publisher)
    live.start()
    try:
        assert publisher.connected.wait(10), "the node never connected to the broker"
        yield Node(live, path)
    finally:
        live.stop()
        publisher.close()


@pytest.fixture
def node(tmp_path: Path, samples: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> Iterator[Node]:
    with running_node(tmp_path, samples, mosquitto, caplog) as live:
        yield live


def publish_retained(url: str, topic: str, payload: str | bytes) -> None:
    """What a broken or old server might leave on the config topic (retained, QoS 1)."""
    client = new_client(f"test-config-{free_port()}")
    connect_client(client, parse_mqtt_url(url), blocking=True)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def logged(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10) -> bool:
    return wait_for(lambda: caplog.text, lambda out: text in out, timeout) is not None and text in caplog.text


def test_console_save_reaches_the_running_edge(tmp_path: Path, node: Node, mosquitto: Mosquitto, database_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from gridwatch.server.runner import ServerRunner
    from gridwatch.server.settings import ServerSettings

    runner = ServerRunner(ServerSettings(data_dir=tmp_path / "server", mqtt_url=mosquitto.url, port=free_port(),
                                         database_url=database_url))
    runner.start()
    try:
        add_account(runner, "boss", "supervisor")
        api = login(f"http://127.0.0.1:{runner.settings.port}", "boss")
        pipeline = node.live.engine.pipelines[0]
        assert node.zone_ids == ["table"]  # the file's zone
        assert wait_for(lambda: pipeline.frames_in, lambda n: n > 0, 20), "the stream never started"

        saved = save(api, [EVERYWHERE])
        assert saved["version"] == 1 and saved["published"] is True
        assert node.wait_zones(["everywhere"]) == ["everywhere"]
        assert logged(caplog, "camera config cam-1 v1 from the console applied without restarting the stream")
        # The new zone works: someone in the clip loiters in it, and the server stores the event.
        stored = wait_for(lambda: zone_events(api, "everywhere"), bool, 60)
        assert stored and stored[0]["type"] == "loitering", [e.zone_id for e in pipeline.events]

        # Not a valid config: a polygon of two points. Logged with its field; the zones stay.
        bad = CameraConfig(site_id=SITE, node_id=NODE, camera_id=CAMERA, version=5, zones=[DOORWAY]).to_dict()
        bad["zones"][0]["polygon"] = [[0, 0], [0.5, 0.5]]
        publish_retained(mosquitto.url, topics.camera_config_topic(SITE, NODE, CAMERA), json.dumps(bad))
        assert logged(caplog, "zones[0].polygon: a polygon needs at least 3 points, got 2")
        publish_retained(mosquitto.url, topics.camera_config_topic(SITE, NODE, CAMERA), b"\xff not json")
        assert logged(caplog, "Invalid JSON")
        # An old version (v1 again, other zones) is ignored too ...
        publish_retained(mosquitto.url, topics.camera_config_topic(SITE, NODE, CAMERA),
                         CameraConfig(site_id=SITE, node_id=NODE, camera_id=CAMERA, version=1,
                                      zones=[DOORWAY]).to_json())
        # ... and the next save (v2) is applied: neither the bad v5 nor the old v1 was taken.
        assert save(api, [EVERYWHERE, DOORWAY])["version"] == 2
        assert node.wait_zones(["everywhere", "doorway"]) == ["everywhere", "doorway"]
        assert logged(caplog, "camera config cam-1 v2 from the console applied"), caplog.text  # logged after the swap
        assert caplog.text.count("from the console applied") == 2, caplog.text
        opened = [r for phase in ("setup", "call") for r in caplog.get_records(phase)  # the node starts in setup
                  if r.getMessage().startswith("camera cam-1: connected to")]
        assert len(opened) == 1, "the stream was reopened"
    finally:
        runner.stop()


def save(api: httpx.Client, zones: list[dict]) -> dict:
    response = api.put(f"/api/cameras/{SITE}/{NODE}/{CAMERA}/zones", json={"zones": zones})
    assert response.status_code == 200, response.text
    return response.json()


def zone_events(api: httpx.Client, zone_id: str) -> list[dict]:
    response = api.get("/api/events", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [event for event in response.json()["items"] if event["zone_id"] == zone_id]


def test_retained_config_applies_at_start_and_the_file_wins_when_it_changes(
        tmp_path: Path, samples: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """A node that boots after the save still gets it (retained); configs it cannot run are ignored; a
    change of the YAML file re-applies the file's zones, as documented."""
    topic = topics.camera_config_topic(SITE, NODE, CAMERA)
    publish_retained(mosquitto.url, topic, CameraConfig(site_id=SITE, node_id=NODE, camera_id=CAMERA, version=3,
                                                         zones=[DOORWAY]).to_json())
    with running_node(tmp_path, samples, mosquitto, caplog) as node:
        assert node.wait_zones(["doorway"]) == ["doorway"]

        # Rules that watch other objects need a new tracker, so a restart: ignored, and said so.
        lane = {"id": "lane", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": [{"type": "fire_lane",
                                                                             "min_stationary_s": 60}]}
        publish_retained(mosquitto.url, topic, CameraConfig(site_id=SITE, node_id=NODE, camera_id=CAMERA, version=4,
                                                             zones=[lane]).to_json())
        assert logged(caplog, "camera config cam-1 v4 ignored, it needs a restart: cameras[cam-1]: rules watch")
        # A camera this node does not have, and a config whose ids disagree with its topic.
        publish_retained(mosquitto.url, topics.camera_config_topic(SITE, NODE, "cam-9"),
                         CameraConfig(site_id=SITE, node_id=NODE, camera_id="cam-9", version=1,
                                      zones=[EVERYWHERE]).to_json())
        assert logged(caplog, "no camera 'cam-9' on this node")
        publish_retained(mosquitto.url, topic, CameraConfig(site_id=SITE, node_id="gate-south", camera_id=CAMERA,
                                                             version=9, zones=[EVERYWHERE]).to_json())
        assert logged(caplog, "it is for demo-compound/gate-south/cam-1")
        assert node.zone_ids == ["doorway"]

        reloader = ConfigReloader(node.config_path, node.live.config, node.live.engine.pipelines,
                                  node.live.engine.scheduler)
        data = yaml.safe_load(node.config_path.read_text())
        data["cameras"][0]["zones"][0]["rules"][0]["min_dwell_s"] = 20
        node.config_path.write_text(yaml.safe_dump(data))
        assert reloader.reload()
        assert node.zone_ids == ["table"]


def test_masks_from_the_console_apply_live_and_black_out_what_is_stored(tmp_path: Path) -> None:
    """Privacy and motion masks change without a restart (a motion threshold still needs one), and a
    privacy mask is black on the image the node stores, only there."""
    import numpy as np

    from gridwatch.broker.zones import Masks, Zone
    from gridwatch.edge.evidence.privacy import black_out
    from gridwatch.edge.node.reload import restart_needed, with_zones

    running = load_config(edge_config(tmp_path, "mqtt://127.0.0.1:1883", None))
    square = ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0))
    masks = Masks(privacy=(square,), motion=(((0, 0), (0.2, 0), (0, 0.2)),))
    new = with_zones(running, CAMERA, tuple(Zone.model_validate(z) for z in [EVERYWHERE]), masks)
    assert restart_needed(running, new) == []
    assert new.cameras[0].privacy_masks == (square,) and new.cameras[0].motion.masks == masks.motion
    stricter = new.model_copy(update={"cameras": (new.cameras[0].model_copy(update={
        "motion": new.cameras[0].motion.model_copy(update={"threshold": 40})}),)})
    assert restart_needed(new, stricter) == [f"cameras[{CAMERA}].motion changed"]

    image = np.full((100, 200, 3), 120, np.uint8)
    assert black_out(image, ()) is image
    masked = black_out(image, (square,))
    assert (masked[52:, 102:] == 0).all() and (masked[:48] == 120).all() and (masked[:, :98] == 120).all()
    assert (image == 120).all()  # the frame the rules see is untouched
