"""Issue 23, acceptance 2 in a real browser: a security guard opens a fire-lane ticket, sees the plate the
edge read (with its crop) and the owner's unit from the imported residents' vehicle list, and notifies the
owner once: the button gives way to "已通知车主" and the audit trail shows the entry.

Reuses the console module's server, broker and Chromium fixtures (one of each for this module).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Browser, expect

from gridwatch.broker import topics
from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase, PlateReading
from tests import test_console_browser as console
from tests.test_console_browser import NODE, SITE, Compound, open_console, shot

compound = console.compound
browser = console.browser

CAMERA = "lane-east-cam"
CSV = "plate,unit,person,phone\n苏E·7K352,3栋2单元1502,王先生,13800001234\n"


def blocked_lane(compound: Compound, plate: str, camera: str = CAMERA) -> Event:
    at = datetime.now(UTC)
    crop = compound.snapshot((200, 70, 10))
    event = Event(type=EventType.FIRE_LANE_BLOCKED, phase=Phase.START, incident_id=uuid.uuid4().hex, site_id=SITE,
                  node_id=NODE, camera_id=camera, zone_id="lane", started_at=at - timedelta(seconds=600),
                  observed_at=at, attributes={"stationary_s": 600.0, "min_stationary_s": 300.0},
                  object=DetectedObject.model_validate({"class": "car", "track_id": 4242,
                                                        "box": (0.3, 0.3, 0.7, 0.8), "confidence": 0.9}),
                  snapshot=compound.snapshot((90, 90, 90)),
                  plate=PlateReading(status="read", text=plate, colour="blue", confidence=0.96, frames=3,
                                     crop_sha256=crop.sha256))
    compound.publisher.publish(topics.events_topic(SITE, NODE, camera), event.to_json())
    return event


def test_a_guard_sees_plate_and_unit_and_notifies_the_owner_once(compound: Compound, browser: Browser) -> None:
    imported = compound.admin.put("/api/registry/vehicles", content=CSV.encode(), headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200, imported.text
    ticket = compound.ticket_of(blocked_lane(compound, "苏E7K352"))
    unwired = compound.admin.post(f"/api/tickets/{ticket['id']}/notify-owner")
    assert unwired.status_code == 422 and "no webhook" in unwired.text, "a notice nobody would receive is refused"
    hook = compound.admin.post("/api/webhooks", json={"url": "https://sms-gateway.example.com/gridwatch",
                                                       "secret": "s" * 20, "events": ["notify_owner"]})
    assert hook.status_code == 201, hook.text
    page = open_console(browser, compound, "guard")
    page.goto(f"/#/ticket/{ticket['id']}")
    plate = page.locator("strong.plate")
    expect(plate).to_have_text("苏E·7K352")
    expect(page.locator("img.plate-crop")).to_have_js_property("complete", True)
    assert page.locator("img.plate-crop").evaluate("img => img.naturalWidth") > 0
    expect(page.locator(".owner-unit")).to_have_text("3栋2单元1502")
    shot(page, "23-fire-lane-plate-owner")
    page.locator("button.notify-owner").click()
    expect(page.locator(".notified")).to_have_text("已通知车主")
    expect(page.locator("button.notify-owner")).to_have_count(0)
    expect(page.locator("tr[data-action=notify_owner]")).to_have_count(1)
    expect(page.locator("tr[data-action=notify_owner]")).to_contain_text("3栋2单元1502")
    assert not page.errors  # type: ignore[attr-defined]
    page.context.close()
    again = compound.admin.post(f"/api/tickets/{ticket['id']}/notify-owner")
    assert again.status_code == 409, again.text


def test_an_unknown_plate_says_so_and_offers_no_notice(compound: Compound, browser: Browser) -> None:
    # another grid's camera: in the first test's grid the incident would join that ticket (correlation)
    ticket = compound.ticket_of(blocked_lane(compound, "粤B12345", camera="gate-north-cam"))
    page = open_console(browser, compound, "guard", lang="en")
    page.goto(f"/#/ticket/{ticket['id']}")
    expect(page.locator("strong.plate")).to_have_text("粤B·12345")
    expect(page.locator("dl.facts")).to_contain_text("Not in the residents' vehicle list")
    expect(page.locator("button.notify-owner")).to_have_count(0)
    page.context.close()
