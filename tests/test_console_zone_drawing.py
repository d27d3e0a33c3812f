"""The installer's zone editor in a real browser, applied by a real edge node (issue 16, acceptance 2).

A live node (reader, scheduler, YOLOX, in real time, looping) watches a fire-lane clip built here from
car-detection.mp4 (the empty lane, a real car held still, the empty lane again: ``bench.eval_events``'
held-car clip, written to the test's temporary folder, never committed) and publishes to the console
module's Mosquitto and server. Its file config has one fire-lane zone over the whole frame, saved as
the camera's config (v1). In Chromium the admin draws a new zone on the camera's latest frame by
clicking its corners, drags and deletes corners, deletes the old zone, picks the fire-lane rule and its
stationary time in a form built from the edge's schema (a value the schema refuses is named before
saving), draws a privacy mask and a motion mask the same way, and saves (v2); the node applies it
without restarting its stream, and on the clip's next loop reports a fire-lane event from the new
zone, whose stored snapshot is black under the privacy mask.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from bench.eval_events import held_car_video
from gridwatch.broker.zones import FireLaneRule, Zone
from gridwatch.edge.config import load_config
from gridwatch.edge.node.runner import LiveNode, evidence_store, mqtt_publisher
from gridwatch.server.registry.accounts import issue_token
from tests import test_console_browser as console
from tests.test_console_browser import SCREENSHOTS, SITE, UNTRANSLATED, Compound, open_console, shot

compound, browser = console.compound, console.browser
NODE, CAMERA = "lane-node", "lane-west-cam"  # the registry's west fire lane (grid 02)
# Seen straight from above, YOLOX-Nano calls these cars "cell phone" (tests/test_rules_fire_lane.py): with its
# label among the objects the held car is a stationary vehicle (fire_lane_blocked), and the lane's empty
# reference is taken only while no vehicle stands in it.
OBJECTS = ["car", "truck", "bus", "motorcycle", "cell phone"]
WHOLE = {"id": "whole", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
         "rules": [{"type": "fire_lane", "min_stationary_s": 5, "objects": OBJECTS}]}
TRUTH = Path(__file__).parent / "data" / "car_detection_ground_truth.yaml"
PRIVACY = ((0.6, 0.35), (0.85, 0.35), (0.85, 0.6), (0.6, 0.6))  # part of the lane, clear of the held car


def wait_until(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@pytest.fixture
def lane_node(compound: Compound, samples: Path, tmp_path: Path) -> Iterator[LiveNode]:
    """A live edge node on the held-car clip, looping in real time, uploading its snapshots to the server."""
    clip = held_car_video(tmp_path, yaml.safe_load(TRUTH.read_text()))
    state = compound.runner.app.state
    with state.sessions() as session:
        token = issue_token(session, f"edge-{NODE}", ["read", "snapshots:write"], state.clock.now())
        session.commit()
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({
        "site_id": SITE, "node_id": NODE, "metrics": {"port": 0}, "evidence": {"dir": "evidence"},
        "mqtt": {"url": compound.runner.settings.mqtt_url, "reconnect_max_s": 2},
        "server": {"url": compound.url, "token": token},
        "cameras": [{"id": CAMERA, "source": str(clip), "loop": True, "detect_fps": 5, "zones": [WHOLE]}]}))
    config = load_config(path)
    publisher = mqtt_publisher(config, tmp_path)
    node = LiveNode(config, evidence_store(config, tmp_path), publisher)
    node.start()
    try:
        assert publisher.connected.wait(10), "the node never connected to the broker"
        yield node
    finally:
        node.stop()
        publisher.close()


def events_in(compound: Compound, zone_id: str) -> list[dict[str, Any]]:
    items = compound.admin.get("/api/events", params={"limit": 200}).json()["items"]
    return [e for e in items if e["camera_id"] == CAMERA and e["zone_id"] == zone_id]


def masked_share(compound: Compound, sha256: str) -> float:
    """The share of near-black pixels inside the privacy mask (a margin in) on a stored snapshot."""
    response = compound.admin.get(f"/api/snapshots/{sha256}")
    assert response.status_code == 200, response.text
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    height, width = image.shape
    (x1, y1), (x2, y2), margin = PRIVACY[0], PRIVACY[2], 0.02
    rows = slice(int((y1 + margin) * height), int((y2 - margin) * height))
    inside = image[rows, int((x1 + margin) * width):int((x2 - margin) * width)]
    return float((inside < 16).mean())


def click_at(page: Page, x: float, y: float, **options: Any) -> None:
    """A click at normalised frame coordinates on the editor's canvas."""
    box = page.locator("svg.zone-canvas").bounding_box()
    assert box
    page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"], **options)


def test_an_installer_draws_a_fire_lane_zone_and_the_edge_reports_from_it(compound: Compound, browser: Browser,
                                                                          lane_node: LiveNode) -> None:
    [first] = wait_until(lambda: [c for c in compound.admin.get("/api/cameras").json()
                                  if c["camera_id"] == CAMERA and c["latest_snapshot_sha256"]],
                         "a first frame from the node", 120)
    # Commissioning: the node's file zones are saved as the camera's config (v1), as an installer starts.
    seeded = compound.admin.put(f"/api/cameras/{SITE}/{NODE}/{CAMERA}/zones", json={"zones": [WHOLE]})
    assert seeded.status_code == 200 and seeded.json()["version"] == 1, seeded.text
    page = open_console(browser, compound, "admin")
    page.goto("/#/cameras")
    page.locator(f".camera[data-camera='{CAMERA}'] button.edit-zones").click()
    expect(page.locator("svg.zone-canvas polygon[data-zone='whole']")).to_be_visible()

    # Draw: five corners, finish; one corner was a slip and is double-clicked away, another dragged.
    page.click("button.new-zone")
    for x, y in ((0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.5, 0.99), (0.05, 0.95)):
        click_at(page, x, y)
    expect(page.locator(".zone-tools")).to_contain_text("5")
    page.click("button.finish-zone")
    new = page.locator("svg.zone-canvas polygon[data-zone='zone-2']")
    expect(new).to_be_visible()
    page.locator("circle.handle[data-zone='zone-2'][data-point='3']").dblclick()
    expect(page.locator("circle.handle[data-zone='zone-2']")).to_have_count(4)
    corner = page.locator("circle.handle[data-zone='zone-2'][data-point='0']").bounding_box()
    assert corner
    page.mouse.move(corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2)
    page.mouse.down()
    box = page.locator("svg.zone-canvas").bounding_box()
    assert box
    page.mouse.move(box["x"] + 0.02 * box["width"], box["y"] + 0.03 * box["height"], steps=5)
    page.mouse.up()

    # The rule's form comes from the edge's schema: every fire-lane setting has its input.
    panel = page.locator(".zone-panel")
    panel.locator(".zone-settings input[name='id']").fill("lane-south")
    panel.locator("select[name='rule_type']").select_option("fire_lane")
    for setting in FireLaneRule.model_fields:
        if setting != "type":
            expect(panel.locator(f".rule [name='{setting}']")).to_have_count(1)
    for setting in set(Zone.model_fields) - {"polygon", "rules"}:
        expect(panel.locator(f".zone-settings [name='{setting}']")).to_have_count(1)
    page.click("button.save-zones")  # min_stationary_s is required and has no default
    errors = page.locator("ul.schema-errors li")
    expect(errors).to_have_text(["zones[1].rules[0].min_stationary_s: 必填"])
    panel.locator(".rule input[name='min_stationary_s']").fill("0")
    page.click("button.save-zones")
    expect(errors).to_have_text(["zones[1].rules[0].min_stationary_s: 必须大于 0"])
    panel.locator(".rule input[name='min_stationary_s']").fill("5")
    panel.locator(".rule input[name='objects']").fill(", ".join(OBJECTS))
    page.locator(".zone-list li[data-zone='whole'] button.delete-zone").click()
    expect(page.locator("svg.zone-canvas polygon[data-zone='whole']")).to_have_count(0)
    # Masks are drawn the same way: a privacy mask over part of the lane, a motion mask in a corner.
    for kind, corners in (("privacy", PRIVACY), ("motion", ((0.005, 0.005), (0.15, 0.005), (0.005, 0.15)))):
        page.click(f"button.new-{kind}-mask")
        for x, y in corners:
            click_at(page, x, y)
        page.click("button.finish-zone")
        expect(page.locator(f"svg.zone-canvas polygon.mask-{kind}[data-mask='{kind}-1']")).to_be_visible()
    page.click("button.save-zones")
    saved_at = time.monotonic()
    expect(page.locator(".zone-editor .message[data-version='2']")).to_be_visible()
    expect(errors).to_have_count(0)
    page.locator(".zone-list li[data-zone='lane-south'] button.select-zone").click()
    page.locator(".zone-editor").scroll_into_view_if_needed()
    shot(page, "10-zone-drawn-fire-lane-and-masks-saved")
    assert page.evaluate("[...window.gridwatchI18n.misses]") == []
    page.click("#lang")  # the same editor in English: every string from the catalogue
    page.locator(f".camera[data-camera='{CAMERA}'] button.edit-zones").click()
    expect(page.locator("svg.zone-canvas polygon.mask-privacy[data-mask='privacy-1']")).to_be_visible()
    page.locator(".zone-list li[data-zone='lane-south'] button.select-zone").click()
    expect(page.locator(".zone-panel .rule")).to_contain_text("Stationary before alert (s)")
    assert page.evaluate(UNTRANSLATED) == [] and page.evaluate("[...window.gridwatchI18n.misses]") == []
    page.locator(".zone-editor").scroll_into_view_if_needed()
    shot(page, "10-zone-editor-en")
    assert not page.errors  # type: ignore[attr-defined]

    saved = compound.admin.get(f"/api/cameras/{SITE}/{NODE}/{CAMERA}/zones").json()
    assert saved["masks"]["privacy"] == [[list(p) for p in PRIVACY]] and len(saved["masks"]["motion"][0]) == 3
    [zone] = saved["zones"]
    assert zone["id"] == "lane-south" and len(zone["polygon"]) == 4
    assert zone["polygon"][0] == [0.02, 0.03] and zone["rules"][0]["min_stationary_s"] == 5
    assert zone["rules"][0]["objects"] == OBJECTS
    pipeline = lane_node.engine.pipelines[0]
    wait_until(lambda: [z.id for z in pipeline.camera.zones] == ["lane-south"], "the node applying the zones", 15)
    assert len(pipeline.camera.privacy_masks) == 1 and len(pipeline.camera.motion.masks) == 1
    # The next loop of the clip: the car held in the lane is reported from the new zone.
    [event, *_] = wait_until(lambda: [e for e in events_in(compound, "lane-south") if e["phase"] == "start"],
                             "a fire-lane event from the new zone", 150)
    assert event["type"] == "fire_lane_blocked", event
    # The privacy mask is black on the stored image; before it, the same place showed the lane.
    black = masked_share(compound, event["snapshot_sha256"])
    assert black > 0.95
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "10-edge-snapshot-with-privacy-mask.jpg").write_bytes(
        compound.admin.get(f"/api/snapshots/{event['snapshot_sha256']}").content)
    assert masked_share(compound, first["latest_snapshot_sha256"]) < 0.05
    print(f"fire-lane event from the drawn zone: {event['type']} {event['phase']} stored "
          f"{time.monotonic() - saved_at:.0f} s after the save; {black:.1%} black under the privacy mask")
    page.context.close()
