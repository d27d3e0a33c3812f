"""`gridwatch demo` as a newcomer runs it: the three situations GridWatch exists for, on real footage.

The demo command starts (embedded broker, SQLite, server, gate controller, one edge node with four
cameras on the Intel sample videos, two of them derived at start-up) and within 120 s the API holds
a courier entry (whose open command reached the gate), a fire-lane ticket and a loitering ticket,
each with a real snapshot. Then Chromium, logged in as the guard, looks at the feed, the gate and
the board and the cameras (every camera of the demo registry online), and the footage credit
line; screenshots go to the test's tmp dir and artifacts/screenshots.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from gridwatch.deploy.demo import DEMO_PASSWORD
from tests.conftest import REPO, free_port
from tests.test_console_browser import DESKTOP, SCREENSHOTS, browser  # noqa: F401 (the module's Chromium)
from tests.test_pipe_end_to_end import get, get_json

WITHIN_S = 120.0
FIRE_LANE = {"fire_lane_blocked", "fire_lane_obstructed"}
WANTED = {"courier_entry": {"courier_entry"}, "fire_lane": FIRE_LANE, "loitering": {"loitering"}}


def login_headers(api: str, username: str, password: str) -> dict[str, str]:
    """The session cookie of a console login, as a request header (reads need no CSRF token)."""
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"{api}/api/auth/login", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return {"Cookie": response.headers["Set-Cookie"].split(";", 1)[0]}


def kinds_seen(tickets: list[dict]) -> set[str]:
    """Which of the three situations have a ticket with a snapshot."""
    return {kind for kind, types in WANTED.items()
            if any(t["type"] in types and t["snapshot_sha256"] for t in tickets)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo command on a free port, with the time its tickets took; stopped (and checked) after the module."""
    workdir = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = (workdir / "demo.log").open("w+")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "gridwatch.deploy", "demo", "--port", str(port), "--data-dir", str(workdir / "data"),
         "--duration", "400"], stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    api = f"http://127.0.0.1:{port}"
    try:
        yield api, started, workdir
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.seek(0)
        output = log.read()
        assert process.returncode == 0, output
        assert f"Console: {api}/" in output
        assert "guard" in output and DEMO_PASSWORD in output  # the demo accounts are printed
        assert "CC BY 4.0" in output  # and the footage credited


def test_all_three_situations_become_tickets_with_snapshots_within_two_minutes(demo) -> None:
    api, started, _workdir = demo
    tickets: list[dict] = []
    while time.monotonic() - started < WITHIN_S:
        try:
            headers = login_headers(api, "guard", DEMO_PASSWORD)
            tickets = get_json(f"{api}/api/tickets?limit=200", headers)["items"]
        except OSError:  # still starting (deriving clips, enrolling the vest, migrating)
            time.sleep(1)
            continue
        if kinds_seen(tickets) == set(WANTED):
            break
        time.sleep(1)
    elapsed = time.monotonic() - started
    assert kinds_seen(tickets) == set(WANTED), [(t["type"], t["camera_id"]) for t in tickets]
    print(f"all three kinds of ticket with snapshots {elapsed:.1f} s after `gridwatch demo` started")

    headers = login_headers(api, "guard", DEMO_PASSWORD)
    cameras = {"courier_entry": "gate-north-cam", "fire_lane": "lane-east-cam", "loitering": "lobby-cam"}
    for kind, types in WANTED.items():
        ticket = next(t for t in tickets if t["type"] in types and t["snapshot_sha256"])
        assert ticket["camera_id"] == cameras[kind]
        assert get(f"{api}/api/snapshots/{ticket['snapshot_sha256']}", headers)[:3] == b"\xff\xd8\xff"
    # The courier was recognised by the enrolled vest and the open command reached the gate.
    entries = get_json(f"{api}/api/events?type=courier_entry&limit=50", headers)["items"]
    starts = [e["payload"]["attributes"] for e in entries if e["phase"] == "start"]
    assert starts and all(a["uniform_id"] == "hivis" and a["gate_decision"] == "allowed" for a in starts), starts
    assert any(a.get("gate") == "sent" and a.get("gate_command_id") for a in starts), starts
    # Passing traffic in the west lane never raises a ticket.
    assert not any(t["camera_id"] == "lane-west-cam" for t in tickets)


def open_demo_console(browser: Browser, api: str, lang: str) -> Page:  # noqa: F811 (the fixture)
    context = browser.new_context(base_url=api, locale=lang, **DESKTOP)
    context.add_init_script(f"localStorage.setItem('gridwatch.lang', {json.dumps(lang)})")
    page = context.new_page()
    page.goto("/")
    page.fill("input[name=username]", "guard")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.login button[type=submit]")
    expect(page.locator("#logout")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30_000)
    return page


def shoot(page: Page, workdir: Path, name: str) -> None:
    path = workdir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / path.name)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_guard_sees_the_three_situations_and_the_footage_credit(demo, browser: Browser, lang: str) -> None:  # noqa: F811
    api, _started, workdir = demo
    page = open_demo_console(browser, api, lang)
    credits = page.locator("#credits")
    expect(credits.locator("li")).to_have_count(4)
    expect(credits).to_contain_text("worker-zone-detection.gif")
    expect(credits).to_contain_text("CC BY 4.0")
    expect(credits.locator("a[href='https://creativecommons.org/licenses/by/4.0/']")).to_have_count(1)

    page.goto("/#/feed")
    expect(page.locator("body")).to_have_attribute("data-view", "feed", timeout=30_000)
    for camera in ("gate-north-cam", "lane-east-cam", "lobby-cam"):
        expect(page.locator("main").get_by_text(camera).first).to_be_visible(timeout=30_000)
    shoot(page, workdir, f"demo-feed-{lang}")

    page.goto("/#/gate")
    expect(page.locator("body")).to_have_attribute("data-view", "gate", timeout=30_000)
    expect(page.locator(".gate .company figure").first.get_by_role("img")).to_be_visible()
    expect(page.locator(".gate-outcome.sent").first).to_be_visible()
    shoot(page, workdir, f"demo-gate-{lang}")

    page.goto("/#/tickets")
    expect(page.locator("body")).to_have_attribute("data-view", "tickets", timeout=30_000)
    for camera in ("gate-north-cam", "lane-east-cam", "lobby-cam"):
        expect(page.locator("main").get_by_text(camera).first).to_be_visible()
    shoot(page, workdir, f"demo-board-{lang}")

    page.goto("/#/cameras")
    expect(page.locator("body")).to_have_attribute("data-view", "cameras", timeout=30_000)
    for camera in ("lobby-cam", "gate-north-cam", "lane-east-cam", "lane-west-cam"):  # none 'status unknown'
        expect(page.locator(f"article.camera[data-camera='{camera}'] .status.online")).to_be_visible()
    shoot(page, workdir, f"demo-cameras-{lang}")
    page.context.close()


def test_the_fire_lane_ticket_clears_and_escalates_on_the_demo_clocks(demo) -> None:
    """The held car drives off (the camera reports the lane clear) and the undispatched ticket is
    escalated once the demo's one-minute registered limit has passed."""
    api, started, _workdir = demo
    ticket: dict = {}
    while time.monotonic() - started < 240:
        headers = login_headers(api, "guard", DEMO_PASSWORD)
        tickets = get_json(f"{api}/api/tickets?limit=200", headers)["items"]
        ticket = next((t for t in tickets if t["type"] in FIRE_LANE), {})
        if ticket.get("ended_at") and ticket["escalation_level"] >= 1:
            break
        time.sleep(2)
    assert ticket.get("ended_at") and ticket["escalation_level"] >= 1, ticket
    actions = [a["action"] for a in get_json(f"{api}/api/tickets/{ticket['id']}/transitions", headers)]
    assert actions[:2] == ["open", "register"] and "escalate" in actions, actions
    print(f"fire-lane ticket cleared and escalated {time.monotonic() - started:.1f} s after the demo started")
