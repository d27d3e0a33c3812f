"""The hardened console in a real browser (Debian's Chromium via Playwright, as in
``test_console_browser.py``) and over plain HTTP: a page on another origin cannot frame the console,
every response carries the security headers, the API docs render with nothing fetched from outside
this machine, and the session cookie is Secure only when the client's connection was TLS (directly,
or as a trusted proxy says).

The server runs without MQTT (``start_ingest=False``): none of this depends on ingest.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests import test_console_browser as console
from tests.auth_helpers import PASSWORD

# The console module's Chromium fixture, found by pytest under this name (one browser for this module).
browser = console.browser
PROXY = "127.0.0.2"  # the trusted TLS proxy's address; the tests' own requests come from 127.0.0.1
LOCAL_HOSTS = {"127.0.0.1", "localhost", PROXY}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerRunner]:
    settings = ServerSettings(data_dir=tmp_path_factory.mktemp("security"), port=0, admin_password=PASSWORD,
                              trusted_proxies=[PROXY])
    with ServerRunner(settings, start_ingest=False) as runner:
        yield runner


@pytest.fixture
def other_origin(tmp_path: Path, server: ServerRunner) -> Iterator[str]:
    """Another site (another port): one page framing the console, one framing a page of its own."""
    (tmp_path / "own.html").write_text("<!doctype html><p id=own>a page of this site</p>", encoding="utf-8")
    (tmp_path / "frames.html").write_text(
        f'<!doctype html><iframe id=console src="{server.url}/" width=800 height=600></iframe>'
        '<iframe id=own src="/own.html"></iframe>', encoding="utf-8")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_page_on_another_origin_cannot_frame_the_console(server: ServerRunner, browser: Browser,
                                                          other_origin: str) -> None:
    page = browser.new_page()
    page.goto(f"{other_origin}/frames.html", wait_until="load")
    expect(page.frame_locator("#own").locator("#own")).to_have_text("a page of this site")  # framing works at all
    console = page.frame_locator("#console")
    page.wait_for_timeout(500)  # the console's module script would have rendered the login form by now
    expect(console.locator("form.login")).to_have_count(0)
    expect(console.locator("input[name=password]")).to_have_count(0)
    direct = browser.new_page()  # the same console, not framed, does render the form
    direct.goto(server.url)
    expect(direct.locator("form.login")).to_be_visible()
    page.close()
    direct.close()


@pytest.mark.parametrize("path", ["/", "/console/js/app.js", "/api/health", "/api/tickets",
                                  "/open311/v2/requests.json", "/openapi.json", "/nowhere"])
def test_every_response_carries_the_security_headers(server: ServerRunner, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    csp = {d.strip().split(" ", 1)[0]: d.strip() for d in response.headers["content-security-policy"].split(";")}
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["script-src"] == "script-src 'self'" and csp["style-src"] == "style-src 'self'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in response.headers  # plain HTTP


def test_the_console_html_has_no_inline_script_style_or_handler(server: ServerRunner) -> None:
    html = httpx.get(f"{server.url}/").text
    assert "<style" not in html and " style=" not in html
    assert all("src=" in tag for tag in html.split("<script")[1:])
    assert " on" not in html.replace("\n", " ").split("<body", 1)[1].split(">", 1)[0]


def _login(server: ServerRunner, source: str, proto: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=server.url) as client:
        return client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD},
                           headers={"X-Forwarded-Proto": proto, "X-Forwarded-For": "203.0.113.9"})


def test_the_session_cookie_is_secure_only_behind_tls(server: ServerRunner) -> None:
    untrusted = _login(server, "127.0.0.1", "https")  # anyone can send the header; only the proxy is believed
    assert untrusted.status_code == 200
    assert "secure" not in untrusted.headers["set-cookie"].lower()
    assert "strict-transport-security" not in untrusted.headers

    proxied = _login(server, PROXY, "https")
    assert proxied.status_code == 200
    assert "secure" in [p.strip().lower() for p in proxied.headers["set-cookie"].split(";")]
    assert proxied.headers["strict-transport-security"].startswith("max-age=")

    proxied_plain = _login(server, PROXY, "http")
    assert "secure" not in proxied_plain.headers["set-cookie"].lower()


# ReDoc links its own logo from its CDN; the policy (img-src 'self') refuses it, so it never leaves.
@pytest.mark.parametrize(("path", "rendered", "refusals"), [("/docs", ".opblock", 0),
                                                            ("/redoc", "[role=menuitem]", 1)])
def test_the_api_docs_render_with_nothing_fetched_from_outside(server: ServerRunner, browser: Browser, path: str,
                                                               rendered: str, refusals: int) -> None:
    page = browser.new_page()
    fetched: list[str] = []
    refused: list[str] = []
    page.on("requestfinished", lambda request: fetched.append(request.url))
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(f"{server.url}{path}")
    expect(page.locator(rendered).first).to_be_visible(timeout=15000)
    assert page.locator(rendered).count() > 10  # the operations are listed, not just the frame of the UI
    page.close()
    outside = [u for u in fetched if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname
               not in LOCAL_HOSTS]
    assert outside == [] and any(u.endswith(".js") for u in fetched)
    assert len(refused) == refusals and all("cdn.redoc.ly" in r for r in refused), refused
