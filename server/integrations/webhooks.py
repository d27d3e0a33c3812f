"""Outbound webhooks: every ticket transition POSTed to the integrators' HTTPS endpoints, signed,
retried with exponential backoff, with a delivery log.

The body is exactly the MQTT ticket-transition payload (``publish.payloads``, schema
``gridwatch.ticket-transition/1``), so an integrator parses one format whichever way it listens.
Deliveries are rows, written when the transition is announced (the same hook that publishes it
to MQTT, once, by the replica that made the change) and worked off by :func:`delivery_worker`:
a retry waiting for its time survives a restart, and a replica claims a delivery by moving its
``next_attempt_at`` forward in one UPDATE, so two replicas never send the same one at once.

Signature: ``X-GridWatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
The timestamp inside the signed text lets a receiver refuse replays older than a few minutes.

Admins manage subscriptions and read the delivery log at ``/api/webhooks`` (the API's webhooks router).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.server.clock import Clock
from gridwatch.server.integrations.publish import payloads
from gridwatch.server.models import TicketTransition, WebhookAttempt, WebhookDelivery, WebhookSubscription
from gridwatch.server.periodic import PeriodicJob
from gridwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-GridWatch-Signature"
EVENT = "ticket.transition"
ALL = "*"
BATCH = 20
MAX_ERROR = 500


class Status:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does (the README shows the same steps): recompute and compare in constant time,
    and refuse a timestamp too far from its own clock."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def backoff(attempts: int, base_s: float, max_s: float) -> timedelta:
    """Wait after the ``attempts``-th failed try: base, 2×base, 4×base, … capped at ``max_s``."""
    return timedelta(seconds=min(base_s * 2 ** (attempts - 1), max_s))


def wants(subscription: WebhookSubscription, action: str) -> bool:
    return ALL in subscription.events or action in subscription.events


def enqueue(sessions: sessionmaker[Session], entries: Sequence[TicketTransition], now: datetime) -> int:
    """Owe each matching subscription each transition (committed); returns the deliveries made.

    Called after the transitions' own commit; a failure here is logged and never undoes them."""
    if not entries:
        return 0
    try:
        with sessions() as session:
            subscriptions = list(session.scalars(sa.select(WebhookSubscription).where(WebhookSubscription.active)))
            if not subscriptions:
                return 0
            rows = [WebhookDelivery(subscription_id=sub.id, transition_id=entry.id, ticket_id=entry.ticket_id,
                                    event=entry.action, payload=payload.to_dict(), status=Status.PENDING, attempts=0,
                                    next_attempt_at=now, created_at=now)
                    for entry, (_topic, payload) in zip(entries, payloads(session, entries), strict=True)
                    for sub in subscriptions if wants(sub, entry.action)]
            session.add_all(rows)
            session.commit()
            return len(rows)
    except Exception:
        log.exception("could not queue webhook deliveries for %d transition(s)", len(entries))
        return 0


# -- sending -------------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook URL is where the admin said; a redirect is reported as the response it is."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def refused_target(url: str, allow_private: bool) -> str | None:
    """Why the server must not POST to ``url``, or None.

    A webhook is sent from inside the server's network, so a URL naming the database, the broker's
    admin port or a cloud metadata address (169.254.169.254) would turn webhooks into a way in
    (SSRF). Checked when a subscription is made and again before every attempt, on the addresses
    the name resolves to at that moment. A name that does not resolve is left to the attempt, which
    reports it."""
    if allow_private:
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return None
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            return (f"url: {host} is {address}, not a public address; "
                    "set GRIDWATCH_WEBHOOK_ALLOW_PRIVATE_TARGETS=true for a receiver inside the network")
    return None


def post(url: str, secret: str, delivery_id: int, body: bytes, timeout_s: float) -> Outcome:
    """One signed POST; never raises (a failure is an outcome to log and retry)."""
    headers = {"Content-Type": "application/json", "User-Agent": "GridWatch-Webhooks/1",
               "X-GridWatch-Event": EVENT, "X-GridWatch-Delivery": str(delivery_id),
               SIGNATURE_HEADER: sign(secret, int(time.time()), body)}
    started = time.perf_counter()
    try:
        with _OPENER.open(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                          timeout=timeout_s) as response:
            response.read(65536)
            return Outcome(response.status, (time.perf_counter() - started) * 1000, None)
    except urllib.error.HTTPError as exc:
        return Outcome(exc.code, (time.perf_counter() - started) * 1000, f"HTTP {exc.code} {exc.reason}")
    except Exception as exc:  # refused, reset, timed out, bad TLS, unresolvable host
        return Outcome(None, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes signed and sent (the same on every retry)."""
    return json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def deliver_due(sessions: sessionmaker[Session], settings: ServerSettings, now: Callable[[], datetime]) -> int:
    """Try every delivery whose time has come (a batch); returns how many were tried."""
    lease = timedelta(seconds=settings.webhook_timeout_s * 2 + 5)
    with sessions() as session:
        due = session.execute(
            sa.select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status == Status.PENDING, WebhookDelivery.next_attempt_at <= now())
            .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)).all()
    tried = 0
    for delivery_id, seen in due:
        with sessions() as session:
            claimed = session.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at == seen,
                       WebhookDelivery.status == Status.PENDING)
                .values(next_attempt_at=now() + lease)).rowcount
            session.commit()
            if claimed != 1:
                continue  # another replica has it
            delivery = session.get(WebhookDelivery, delivery_id)
            subscription = session.get(WebhookSubscription, delivery.subscription_id)
            refused = refused_target(subscription.url, settings.webhook_allow_private_targets)
            outcome = Outcome(None, 0.0, refused) if refused else post(
                subscription.url, subscription.secret, delivery.id, body_of(delivery), settings.webhook_timeout_s)
            _record(session, delivery, outcome, settings, now(), final=refused is not None)
            tried += 1
    return tried


def _record(session: Session, delivery: WebhookDelivery, outcome: Outcome, settings: ServerSettings,
            at: datetime, final: bool = False) -> None:
    """Log one attempt; ``final``: no retry can succeed (a refused target), so it fails at once."""
    session.add(WebhookAttempt(delivery_id=delivery.id, at=at, status_code=outcome.status_code,
                               latency_ms=round(outcome.latency_ms, 3), error=outcome.error))
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.ok:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = Status.DELIVERED, at, None
    elif final or delivery.attempts >= settings.webhook_max_attempts:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = Status.FAILED, at, None
    else:
        delivery.next_attempt_at = at + backoff(delivery.attempts, settings.webhook_backoff_s,
                                                settings.webhook_backoff_max_s)
    session.commit()


def delivery_worker(sessions: sessionmaker[Session], settings: ServerSettings, clock: Clock) -> PeriodicJob:
    """Sends due deliveries every ``webhook_poll_s``, at once again while full batches keep coming."""
    return PeriodicJob("webhooks", lambda: deliver_due(sessions, settings, clock.now) == BATCH,
                       settings.webhook_poll_s, stop_timeout_s=settings.webhook_timeout_s + 5)
