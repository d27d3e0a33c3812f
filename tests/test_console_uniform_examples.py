"""Issue 15, item 4 in a real browser: a supervisor opens a courier event in the feed and adds the
person crop as a negative example of the uniform it was taken for; the example is listed under the
event, stored, and published retained for the site's edge nodes.

Reuses the console module's server, broker and Chromium fixtures (one of each for this module).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Browser, expect

from gridwatch.broker import topics
from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase
from tests import test_console_browser as console
from tests.test_console_browser import NODE, SITE, Compound, Subscriber, open_console, shot

# The console module's fixtures, found by pytest under these names (one server and browser for this module).
compound = console.compound
browser = console.browser

CAMERA = "gate-north-cam"


def courier_entry(compound: Compound) -> Event:
    """A courier_entry as the edge sends it: the scene, and the person's crop in ``attributes.crop_sha256``."""
    at = datetime.now(UTC)
    crop = compound.snapshot((200, 30, 30))  # a red coat the gate took for a meituan uniform
    event = Event(type=EventType.COURIER_ENTRY, phase=Phase.START, incident_id=uuid.uuid4().hex, site_id=SITE,
                  node_id=NODE, camera_id=CAMERA, zone_id="gate", started_at=at - timedelta(seconds=3),
                  observed_at=at, attributes={"uniform_id": "meituan", "score": 0.71, "crop_sha256": crop.sha256},
                  object=DetectedObject.model_validate({"class": "person", "track_id": 9001,
                                                        "box": (0.45, 0.3, 0.8, 0.85), "confidence": 0.9}),
                  snapshot=compound.snapshot((60, 60, 200)))
    compound.publisher.publish(topics.events_topic(SITE, NODE, CAMERA), event.to_json())
    return event


def test_a_supervisor_adds_a_negative_example_from_an_event(compound: Compound, browser: Browser) -> None:
    event = courier_entry(compound)
    page = open_console(browser, compound, "chen", lang="en")
    page.goto("/#/feed")
    row = page.locator(f"li.event[data-event-id='{event.event_id}']")
    expect(row).to_be_visible(timeout=10_000)
    row.click()
    examples = page.locator(f".evidence[data-event='{event.event_id}'] .uniform-examples")
    expect(examples).to_be_visible()
    expect(examples.locator("input[name=uniform_id]")).to_have_value("meituan")  # the uniform it was taken for
    expect(examples.locator("li.empty")).to_be_visible()
    shot(page, "15-uniform-example-before")
    examples.locator("button.negative").click()
    added = examples.locator(f"li.example.negative[data-event='{event.event_id}']")
    expect(added).to_be_visible()
    expect(added).to_contain_text("Counter-example")
    expect(examples.locator(".example-status")).to_contain_text("meituan")
    expect(added.locator("img.thumb")).to_have_js_property("complete", True)
    assert added.locator("img.thumb").evaluate("img => img.naturalWidth") > 0  # the crop really loaded
    shot(page, "15-uniform-example-added")
    examples.locator("button.negative").click()  # the same crop again: refused, said so, still listed once
    expect(examples.locator(".example-status .error")).to_be_visible()
    expect(examples.locator("li.example")).to_have_count(1)
    assert not page.errors  # type: ignore[attr-defined]
    page.context.close()

    listed = compound.admin.get("/api/uniforms/meituan/examples", params={"site_id": SITE}).json()
    assert [(e["label"], e["event_id"], e["added_by"]) for e in listed] == [("negative", event.event_id, "p-chen")]
    pushed = Subscriber(compound.runner.settings.mqtt_url, topics.uniform_examples_topic(SITE, "meituan")).first()
    assert pushed["schema"] == "gridwatch.uniform-examples/1"
    assert [(e["label"], e["crop_sha256"]) for e in pushed["examples"]] == [
        ("negative", event.attributes["crop_sha256"])]


def test_a_security_guard_sees_the_event_without_the_example_form(compound: Compound, browser: Browser) -> None:
    event = courier_entry(compound)
    page = open_console(browser, compound, "guard", lang="en")
    page.goto("/#/feed")
    row = page.locator(f"li.event[data-event-id='{event.event_id}']")
    expect(row).to_be_visible(timeout=10_000)
    row.click()
    expect(page.locator(f".evidence[data-event='{event.event_id}']")).to_be_visible()
    expect(page.locator(".uniform-examples")).to_have_count(0)
    assert not page.errors  # type: ignore[attr-defined]
    page.context.close()
