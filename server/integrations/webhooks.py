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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
import urllib3
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.server.clock import Clock
from gridwatch.server.integrations.publish import payloads
from gridwatch.server.models import TicketTransition, WebhookAttempt, WebhookDelivery, WebhookSubscription
from gridwatch.server.periodic import PeriodicJob
from gridwatch.server.registry import vehicles
from gridwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SIGNATURE_HEADER = "X-GridWatch-Signature"
EVENT = "ticket.transition"
ALL = "*"
NOTIFY_OWNER = "notify_owner"  # asking a blocking car's owner to move it (api/routers/tickets.py)
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


def anyone_wants(session: Session, action: str) -> bool:
    """True when an active subscription would receive a transition ``action`` (a notice nobody gets is not sent)."""
    return any(wants(sub, action) for sub in session.scalars(
        sa.select(WebhookSubscription).where(WebhookSubscription.active)))


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
                                    event=entry.action, payload=_with_contact(session, entry, payload.to_dict()),
                                    status=Status.PENDING, attempts=0, next_attempt_at=now, created_at=now)
                    for entry, (_topic, payload) in zip(entries, payloads(session, entries), strict=True)
                    for sub in subscriptions if wants(sub, entry.action)]
            session.add_all(rows)
            session.commit()
            return len(rows)
    except Exception:
        log.exception("could not queue webhook deliveries for %d transition(s)", len(entries))
        return 0


def _with_contact(session: Session, entry: TicketTransition, body: dict) -> dict:
    """A ``notify_owner`` delivery carries what the gateway needs to reach the owner (plate, person, phone),
    which the audit entry itself leaves out; every other body is the transition payload as it is."""
    if entry.action != NOTIFY_OWNER:
        return body
    owner = vehicles.owner_of_ticket(session, entry.ticket_id)
    contact = owner.model_dump() if owner else {}
    return {**body, "details": {**body["details"], **contact}}


# -- sending -------------------------------------------------------------------------------------


Resolver = Callable[[str], list[str]]
IsPublic = Callable[[IPAddress], bool]


def resolve(host: str) -> list[str]:
    """Every address ``host`` has now (an IP literal is its own)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def is_public(address: IPAddress) -> bool:
    return address.is_global


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the address the check passed (``address``), or why not."""

    address: str | None
    refusal: str | None = None
    error: str | None = None


def pin(url: str, allow_private: bool, resolver: Resolver = resolve, public: IsPublic = is_public) -> Target:
    """Resolve ``url``'s host once and choose the address to connect to, or refuse.

    A webhook is sent from inside the server's network, so a URL naming the database, the broker's
    admin port or a cloud metadata address (169.254.169.254) would turn webhooks into a way in
    (SSRF). Checking a name and then letting the HTTP client resolve it again would let a DNS
    server answer a public address to the check and a private one to the connection (rebinding);
    so the attempt connects to the very address checked here. Any non-public address among the
    answers refuses the target (``allow_private`` lifts that for an in-house receiver)."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = resolver(host)
    except (OSError, UnicodeError) as exc:
        return Target(None, error=f"{type(exc).__name__}: could not resolve {host}: {exc}"[:MAX_ERROR])
    if not addresses:
        return Target(None, error=f"could not resolve {host}: no address")
    if not allow_private:
        for address in addresses:
            if not public(ipaddress.ip_address(address.split("%")[0])):
                return Target(None, refusal=(f"url: {host} is {address}, not a public address; "
                                             "set GRIDWATCH_WEBHOOK_ALLOW_PRIVATE_TARGETS=true for a receiver "
                                             "inside the network"))
    return Target(addresses[0])


def refused_target(url: str, allow_private: bool) -> str | None:
    """Why the server must not POST to ``url``, or None; checked when a subscription is made (every
    attempt checks again, in :func:`pin`). A name that does not resolve is left to the attempt."""
    return pin(url, allow_private).refusal


def post(url: str, secret: str, delivery_id: int, body: bytes, timeout_s: float, address: str) -> Outcome:
    """One signed POST to ``address`` with ``url``'s Host header and TLS name (SNI and certificate
    check); never follows a redirect (the receiver is where the admin said; a 3xx is reported as
    the failure it is) and never raises (a failure is an outcome to log and retry)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    headers = {"Content-Type": "application/json", "User-Agent": "GridWatch-Webhooks/1",
               "X-GridWatch-Event": EVENT, "X-GridWatch-Delivery": str(delivery_id),
               SIGNATURE_HEADER: sign(secret, int(time.time()), body), "Host": parts.netloc.rsplit("@", 1)[-1]}
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    pool: urllib3.HTTPConnectionPool
    try:
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(address, parts.port or 443, server_hostname=host, assert_hostname=host,
                                               cert_reqs="CERT_REQUIRED", timeout=timeout_s, retries=False)
        else:
            pool = urllib3.HTTPConnectionPool(address, parts.port or 80, timeout=timeout_s, retries=False)
        with pool:
            response = pool.urlopen("POST", path, body=body, headers=headers, redirect=False, retries=False,
                                    preload_content=False, assert_same_host=False)
            response.read(65536)
            response.release_conn()
    except Exception as exc:  # refused, reset, timed out, bad TLS
        return Outcome(None, (time.perf_counter() - started) * 1000, f"{_root(exc)}: {exc}"[:MAX_ERROR])
    latency = (time.perf_counter() - started) * 1000
    if 200 <= response.status < 300:
        return Outcome(response.status, latency, None)
    return Outcome(response.status, latency, f"HTTP {response.status} {response.reason or ''}".strip())


def _root(exc: BaseException) -> str:
    """The innermost cause's type (ConnectionRefusedError, not urllib3's wrapper): what an admin
    reading the delivery log needs to know."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return type(exc).__name__


def attempt(url: str, secret: str, delivery_id: int, body: bytes, timeout_s: float, allow_private: bool, *,
            resolver: Resolver = resolve, public: IsPublic = is_public) -> tuple[Outcome, bool]:
    """Check and send once; returns the outcome and whether it is final (a refused target: no retry
    can succeed while the name points there)."""
    target = pin(url, allow_private, resolver, public)
    if target.refusal is not None:
        return Outcome(None, 0.0, target.refusal), True
    if target.address is None:
        return Outcome(None, 0.0, target.error), False
    return post(url, secret, delivery_id, body, timeout_s, target.address), False


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
            outcome, final = attempt(subscription.url, subscription.secret, delivery.id, body_of(delivery),
                                     settings.webhook_timeout_s, settings.webhook_allow_private_targets)
            _record(session, delivery, outcome, settings, now(), final=final)
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
