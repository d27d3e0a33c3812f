"""Outbound webhooks against a real local HTTP receiver that refuses the first tries: signed bodies,
retries with growing waits, a delivery log in the API, filters, and retries that survive a restart
(SQLite and PostgreSQL, a real server on a free port)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gridwatch.broker.contract import TicketTransition
from gridwatch.server.integrations.webhooks import SIGNATURE_HEADER, refused_target, verify
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import add_account, login
from tests.conftest import free_port
from tests.reliability_helpers import wait_for

SECRET = "s3cret-for-the-receiver-only"


@dataclass
class Receiver:
    """An HTTP endpoint answering 503 to the first ``fail_first`` tries of each delivery, then 200."""

    fail_first: int
    port: int = field(default_factory=free_port)
    received: list[tuple[float, dict[str, str], bytes, int]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self
        tries: Counter[str] = Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                delivery = self.headers["X-GridWatch-Delivery"]
                tries[delivery] += 1
                status = 503 if tries[delivery] <= receiver.fail_first else 200
                receiver.received.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body,
                                          status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/gridwatch"


def _settings(database_url: str, data: Path) -> ServerSettings:
    return ServerSettings(data_dir=data, database_url=database_url, port=0, webhook_poll_s=0.1,
                          webhook_backoff_s=0.4, webhook_backoff_max_s=5, webhook_max_attempts=6,
                          open311_jurisdiction="site-a", webhook_allow_private_targets=True)  # receiver on loopback


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    r.start()
    yield r
    r.stop()


def _report(runner: ServerRunner, token: str) -> int:
    """A ticket through Open311, which announces its ``open`` transition."""
    response = httpx.post(f"{runner.url}/open311/v2/requests.json",
                          data={"api_key": token, "service_code": "loitering", "address_string": "东门"})
    assert response.status_code == 201, response.text
    return int(response.json()[0]["service_request_id"])


def _admin(runner: ServerRunner) -> tuple[httpx.Client, str]:
    add_account(runner, "boss", "admin")
    admin = login(runner.url, "boss")
    token = admin.post("/api/tokens", json={"name": "civic", "scopes": ["open311:write"]}).json()["token"]
    return admin, token


def test_transitions_are_signed_retried_with_backoff_and_logged(database_url: str, tmp_path: Path,
                                                                receiver: Receiver) -> None:
    with ServerRunner(_settings(database_url, tmp_path), start_ingest=False) as runner:
        admin, token = _admin(runner)
        sub = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET, "events": ["open", "register"]})
        assert sub.status_code == 201, sub.text
        assert "secret" not in sub.json() and sub.json()["events"] == ["open", "register"]
        closing_only = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET, "events": ["close"]})
        sub_id, other_id = sub.json()["id"], closing_only.json()["id"]

        ticket_id = _report(runner, token)
        registered = admin.post(f"/api/tickets/{ticket_id}/transitions", json={"action": "register"})
        assert registered.status_code == 200, registered.text

        def delivered() -> list[dict] | None:
            page = admin.get(f"/api/webhooks/{sub_id}/deliveries").json()
            done = [d for d in page["items"] if d["status"] == "delivered"]
            return page["items"] if page["total"] == 2 and len(done) == 2 else None

        deliveries = wait_for(delivered, lambda v: v is not None, timeout=30)
        assert deliveries is not None, admin.get(f"/api/webhooks/{sub_id}/deliveries").text
        assert sorted(d["event"] for d in deliveries) == ["open", "register"]
        for delivery in deliveries:
            assert [a["status_code"] for a in delivery["log"]] == [503, 503, 200]
            assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
            assert all(a["latency_ms"] > 0 for a in delivery["log"])
            assert delivery["log"][0]["error"] == "HTTP 503 Service Unavailable"
        assert admin.get(f"/api/webhooks/{other_id}/deliveries").json()["total"] == 0
        assert admin.get(f"/api/webhooks/{sub_id}/deliveries?status=failed").json()["total"] == 0

        by_delivery: dict[str, list[tuple[float, dict[str, str], bytes, int]]] = {}
        for entry in receiver.received:
            by_delivery.setdefault(entry[1]["x-gridwatch-delivery"], []).append(entry)
        assert len(by_delivery) == 2
        for tries in by_delivery.values():
            times = [t for t, *_ in tries]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert gaps[0] >= 0.4 * 0.9 and gaps[1] >= 0.8 * 0.9, gaps  # exponential: 0.4 s, then 0.8 s
            bodies = {body for _, _, body, _ in tries}
            assert len(bodies) == 1  # a retry sends the same bytes
            for _, headers, body, _ in tries:
                assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], body, time.time())
                assert not verify("another-secret-entirely", headers[SIGNATURE_HEADER.lower()], body, time.time())
                assert headers["x-gridwatch-event"] == "ticket.transition"
            payload = TicketTransition.model_validate(json.loads(bodies.pop()))  # the MQTT contract
            assert payload.ticket_id == ticket_id and payload.site_id == "site-a"
        admin.close()


def test_pending_retries_survive_a_restart(database_url: str, tmp_path: Path) -> None:
    receiver = Receiver(fail_first=0)  # not started yet: connections are refused
    with ServerRunner(_settings(database_url, tmp_path), start_ingest=False) as runner:
        admin, token = _admin(runner)
        sub_id = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET}).json()["id"]
        _report(runner, token)

        def refused() -> dict | None:
            items = admin.get(f"/api/webhooks/{sub_id}/deliveries").json()["items"]
            return items[0] if items and items[0]["attempts"] >= 1 else None

        pending = wait_for(refused, lambda v: v is not None, timeout=20)
        assert pending is not None
        assert pending["status"] == "pending" and pending["last_status_code"] is None
        assert "ConnectionRefused" in pending["last_error"] or "URLError" in pending["last_error"]
        admin.close()

    receiver.start()
    try:
        with ServerRunner(_settings(database_url, tmp_path), start_ingest=False) as runner:
            admin = login(runner.url, "boss")

            def done() -> dict | None:
                items = admin.get(f"/api/webhooks/{sub_id}/deliveries").json()["items"]
                return items[0] if items[0]["status"] == "delivered" else None

            finished = wait_for(done, lambda v: v is not None, timeout=30)
            assert finished is not None
            assert finished["log"][-1]["status_code"] == 200 and finished["attempts"] >= 2
            assert len(receiver.received) == 1
            assert admin.delete(f"/api/webhooks/{sub_id}").status_code == 204
            assert admin.get(f"/api/webhooks/{sub_id}/deliveries").status_code == 404
            admin.close()
    finally:
        receiver.stop()


def test_subscriptions_are_validated_and_admin_only(database_url: str, tmp_path: Path) -> None:
    with ServerRunner(_settings(database_url, tmp_path), start_ingest=False) as runner:
        admin, _ = _admin(runner)
        for body, field_name in [({"url": "ftp://x.example/", "secret": SECRET}, "url"),
                                 ({"url": "http://x.example/", "secret": "short"}, "secret"),
                                 ({"url": "http://x.example/", "secret": SECRET, "events": ["Open!"]}, "events")]:
            response = admin.post("/api/webhooks", json=body)
            assert response.status_code == 422 and field_name in response.json()["error"]["message"], response.text
        add_account(runner, "guard", "security")
        guard = login(runner.url, "guard")
        assert guard.get("/api/webhooks").status_code == 403
        assert guard.post("/api/webhooks", json={"url": "http://x.example/", "secret": SECRET}).status_code == 403
        guard.close()
        admin.close()


def test_a_delivery_that_never_succeeds_is_marked_failed(database_url: str, tmp_path: Path) -> None:
    receiver = Receiver(fail_first=99)
    receiver.start()
    settings = _settings(database_url, tmp_path).model_copy(update={"webhook_backoff_s": 0.1,
                                                                    "webhook_max_attempts": 3})
    try:
        with ServerRunner(settings, start_ingest=False) as runner:
            admin, token = _admin(runner)
            sub_id = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET}).json()["id"]
            _report(runner, token)

            def failed() -> dict | None:
                items = admin.get(f"/api/webhooks/{sub_id}/deliveries?status=failed").json()["items"]
                return items[0] if items else None

            delivery = wait_for(failed, lambda v: v is not None, timeout=20)
            assert delivery is not None
            assert delivery["attempts"] == 3 and [a["status_code"] for a in delivery["log"]] == [503] * 3
            assert delivery["next_attempt_at"] is None and delivery["finished_at"] is not None
            time.sleep(0.5)
            assert len(receiver.received) == 3  # no try after the last
            admin.close()
    finally:
        receiver.stop()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/hook",
                                 "http://192.168.1.20:8080/hook"])
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    reason = refused_target(url, allow_private=False)
    assert reason is not None and reason.startswith("url: ") and "GRIDWATCH_WEBHOOK_ALLOW_PRIVATE_TARGETS" in reason
    assert refused_target(url, allow_private=True) is None


def test_a_public_address_is_a_target() -> None:
    assert refused_target("https://93.184.216.34/hook", allow_private=False) is None


def test_a_private_target_is_refused_at_subscription_and_before_every_attempt(database_url: str,
                                                                              tmp_path: Path) -> None:
    """Refused when subscribed; and a subscription made while private targets were allowed gets no POST
    once they are not: its delivery fails at once, logged with the reason, and the receiver hears nothing."""
    receiver = Receiver(fail_first=0)
    receiver.start()
    try:
        with ServerRunner(_settings(database_url, tmp_path), start_ingest=False) as runner:
            admin, token = _admin(runner)
            sub_id = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET}).json()["id"]
            admin.close()
        strict = _settings(database_url, tmp_path).model_copy(update={"webhook_allow_private_targets": False})
        with ServerRunner(strict, start_ingest=False) as runner:
            admin = login(runner.url, "boss")
            refused = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET})
            assert refused.status_code == 422 and "127.0.0.1" in refused.json()["error"]["message"], refused.text
            _report(runner, token)

            def failed() -> dict | None:
                items = admin.get(f"/api/webhooks/{sub_id}/deliveries").json()["items"]
                return items[0] if items and items[0]["status"] == "failed" else None

            delivery = wait_for(failed, lambda v: v is not None, timeout=20)
            assert delivery is not None and delivery["attempts"] == 1
            assert "not a public address" in delivery["last_error"]
            assert receiver.received == []
            admin.close()
    finally:
        receiver.stop()
