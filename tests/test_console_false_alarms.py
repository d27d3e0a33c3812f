"""False alarms (误报) in a real browser: a guard marks a lobby ticket a false alarm with a reason, and
the supervisor's indicators show the lobby camera's (and zone's) false-alarm rate for this week.

The server, broker and Chromium are tests/test_console_browser.py's fixtures (one of each for this module).
"""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Browser, expect

from gridwatch.broker.contract import EventType
from tests import test_console_browser as console
from tests.test_console_browser import Compound, open_console, shot

compound, browser = console.compound, console.browser


def test_a_guard_marks_a_false_alarm_and_the_supervisor_sees_the_cameras_rate(compound: Compound,
                                                                                      browser: Browser) -> None:
    daytime = console.daytime()  # reported, waiting for a person (loitering registers itself only at night)
    marked, kept = (compound.ticket_of(compound.publish("lobby-cam", EventType.LOITERING, zone="table",
                                                        at=daytime + timedelta(seconds=n))) for n in (0, 1))
    guard = open_console(browser, compound, "guard")
    guard.goto(f"/#/ticket/{marked['id']}")
    guard.click(".actions button[data-action='mark_false_alarm']")
    form = guard.locator("form.action-form[data-action='mark_false_alarm']")
    expect(form.locator("select[name=false_alarm_reason] option")).to_have_count(7)
    form.locator("select[name=false_alarm_reason]").select_option("misrecognised")
    form.locator("textarea[name=reason]").fill("保洁员在擦桌子")
    shot(guard, "9-false-alarm-form")
    form.locator("button.primary").click()
    expect(guard.locator("h2 .stage[data-stage='voided']")).to_be_visible()  # nobody had registered it
    expect(guard.locator(".false-alarm[data-reason='misrecognised']")).to_have_text("误识别（阴影、反光、动物等）")
    trail = guard.locator("table.audit tr[data-action='mark_false_alarm']")
    expect(trail).to_contain_text("误报原因: 误识别（阴影、反光、动物等）")
    expect(trail).to_contain_text("保洁员在擦桌子")
    expect(guard.locator(".actions button[data-action='mark_false_alarm']")).to_have_count(0)  # once
    assert not guard.errors  # type: ignore[attr-defined]
    guard.context.close()

    api = compound.admin.get(f"/api/tickets/{marked['id']}").json()
    assert (api["stage"], api["false_alarm_reason"]) == ("voided", "misrecognised")
    assert compound.admin.get(f"/api/tickets/{kept['id']}").json()["false_alarm_reason"] is None
    local = daytime + timedelta(hours=8)
    monday = (local - timedelta(days=local.weekday())).date().isoformat()
    [row] = [r for r in compound.admin.get("/api/indicators/false-alarms", params={"by": "camera"}).json()
             if r["group"] == "lobby-cam"]
    assert (row["week"], row["tickets"], row["false_alarms"], row["false_alarm_rate"]) == (monday, 2, 1, 0.5)

    chen = open_console(browser, compound, "chen")  # the supervisor
    chen.goto("/#/indicators")
    rates = chen.locator("table.false-alarm-rates")
    cell = rates.locator(f"tr[data-group='lobby-cam'][data-week='{monday}'] td.rate")
    expect(cell).to_have_text("50%")
    chen.locator("select[name=fa_by]").select_option("zone")
    expect(rates.locator(f"tr[data-group='lobby-cam/table'][data-week='{monday}'] td.rate")).to_have_text("50%")
    expect(chen.locator("section.false-alarms")).to_contain_text("误识别（阴影、反光、动物等） 1")
    chen.locator("section.false-alarms").scroll_into_view_if_needed()
    shot(chen, "9-false-alarm-rate-per-zone")
    assert not chen.errors  # type: ignore[attr-defined]
    chen.context.close()
