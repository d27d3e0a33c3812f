"""Live updates: the ingest thread announces ticket changes, SSE clients on the event loop hear them.

Across replicas (several server processes on one PostgreSQL database) :class:`LiveFanout` carries
each announcement to every replica with LISTEN/NOTIFY; on SQLite it stays in-process.

The ingest worker is a plain thread and the HTTP side is asyncio, so the broadcaster hands each
message to every subscriber's own loop with ``call_soon_threadsafe``; a slow client only loses its
own messages (its bounded queue overflows and it is disconnected), never stalls ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 256
CHANNEL = "gridwatch_live"  # the PostgreSQL NOTIFY channel every replica listens on
NOTIFY_MAX_BYTES = 7900  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more
LISTEN_POLL_S = 0.5  # how soon a stopping listener notices
LISTEN_RETRY_MIN_S = 0.5
LISTEN_RETRY_MAX_S = 10.0


@dataclass(frozen=True)
class LiveMessage:
    """One Server-Sent Event: ``event`` is its name, ``data`` is sent as JSON."""

    event: str
    data: dict[str, Any]
    id: int = 0

    def encode(self) -> str:
        body = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.event}\ndata: {body}\n\n"


@dataclass(eq=False)
class Subscription:
    """A subscriber's queue; ``None`` in it means the broadcaster closed or the client overflowed."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[LiveMessage | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
    )
    overflowed: bool = False

    def _deliver(self, message: LiveMessage | None) -> None:
        """Runs on the subscriber's loop."""
        if self.overflowed:
            return
        if message is None:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the end marker: this client will reconnect and re-read the list.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Broadcaster:
    """Thread-safe fan-out of :class:`LiveMessage` to asyncio subscribers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self._closed = False

    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> Subscription:
        """Register a subscriber on ``loop`` (default: the running loop)."""
        sub = Subscription(loop or asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                sub.queue.put_nowait(None)
            else:
                self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> LiveMessage:
        """Send to every subscriber; callable from any thread, never blocks."""
        with self._lock:
            message = LiveMessage(event, data, next(self._ids))
            subscribers = list(self._subscribers)
        for sub in subscribers:
            self._send(sub, message)
        return message

    def close(self) -> None:
        """End every subscriber's stream (server shutdown) and refuse new ones."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            self._send(sub, None)

    def _send(self, sub: Subscription, message: LiveMessage | None) -> None:
        try:
            sub.loop.call_soon_threadsafe(sub._deliver, message)
        except RuntimeError:  # the subscriber's loop is closed
            self.unsubscribe(sub)


@dataclass
class Notice:
    """What changed in one commit, by id: the rows are read back (as the REST API shows them) by
    whoever announces them, so a notice stays small enough for PostgreSQL's NOTIFY (< 8000 bytes)."""

    events: list[str] = field(default_factory=list)
    tickets: list[tuple[int, bool]] = field(default_factory=list)  # (ticket id, created)
    transitions: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.tickets or self.transitions)

    def to_json(self) -> str:
        return json.dumps({"e": self.events, "t": self.tickets, "x": self.transitions}, separators=(",", ":"))

    @classmethod
    def from_json(cls, payload: str) -> Notice:
        data = json.loads(payload)
        return cls([str(e) for e in data["e"]], [(int(t), bool(c)) for t, c in data["t"]],
                   [int(x) for x in data["x"]])

    def chunks(self, max_bytes: int = NOTIFY_MAX_BYTES) -> Iterator[Notice]:
        """Split into notices of at most ``max_bytes`` of JSON each, keeping the order events ->
        tickets -> transitions, so every replica announces a large batch in the same order."""
        items: list[tuple[str, Any]] = ([("events", e) for e in self.events] + [("tickets", t) for t in self.tickets]
                                        + [("transitions", x) for x in self.transitions])
        chunk, size = Notice(), _EMPTY_NOTICE_BYTES
        for name, item in items:
            item_bytes = len(json.dumps(item, separators=(",", ":"))) + 1
            if chunk and size + item_bytes > max_bytes:
                yield chunk
                chunk, size = Notice(), _EMPTY_NOTICE_BYTES
            getattr(chunk, name).append(item)
            size += item_bytes
        if chunk:
            yield chunk


_EMPTY_NOTICE_BYTES = len(Notice().to_json())


def render(broadcaster: Broadcaster, session_factory: Callable[[], Session], notice: Notice) -> None:
    """Read the notice's rows after their commit and publish them: ``event`` messages (the live feed),
    then ``ticket`` (created or updated), then ``transition`` (audit entries), in that order."""
    if broadcaster.subscriber_count == 0:
        return  # no console on this replica: nothing to read back
    from gridwatch.server.api.schemas import EventOut, TicketOut, TransitionOut
    from gridwatch.server.models import EventRecord, Ticket, TicketTransition

    messages: list[tuple[str, dict[str, Any]]] = []
    with session_factory() as session:
        if notice.events:
            rows = session.scalars(sa.select(EventRecord).where(EventRecord.event_id.in_(notice.events))
                                   .order_by(EventRecord.id))
            messages += [("event", EventOut.model_validate(row).model_dump(mode="json")) for row in rows]
        for ticket_id, created in notice.tickets:
            ticket = session.get(Ticket, ticket_id)
            if ticket is not None:
                data = TicketOut.model_validate(ticket).model_dump(mode="json")
                messages.append(("ticket", {"action": "created" if created else "updated", "ticket": data}))
        if notice.transitions:
            entries = session.scalars(sa.select(TicketTransition)
                                      .where(TicketTransition.id.in_(notice.transitions))
                                      .order_by(TicketTransition.id))
            messages += [("transition", TransitionOut.model_validate(e).model_dump(mode="json")) for e in entries]
    for name, data in messages:
        broadcaster.publish(name, data)


class LiveFanout:
    """Announces committed changes to the console streams of this replica or, on PostgreSQL, of every
    replica that shares the database.

    With several server replicas behind a load balancer, a console connected to replica B must see
    the tickets that replica A ingested. On PostgreSQL each announcement is a ``NOTIFY`` on
    :data:`CHANNEL` (ids only; see :class:`Notice`), and every replica, the sender included, LISTENs
    on a connection of its own and renders what it hears for its own clients: one path for local and
    remote changes, the same order everywhere. The database is already the shared state, so no
    second bus is needed. SQLite is one process's file: there the notice is rendered in-process.
    A notification sent while a replica's listener is reconnecting is lost for that replica's live
    clients only (logged); the data itself is in the database and the console re-reads lists.
    """

    def __init__(self, broadcaster: Broadcaster, session_factory: Callable[[], Session], database_url: str) -> None:
        self.broadcaster = broadcaster
        self.session_factory = session_factory
        url = sa.engine.make_url(database_url)
        self.shared = url.get_backend_name() == "postgresql"
        # libpq takes the SQLAlchemy URL without the "+psycopg" driver suffix.
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        """True while announcements from other replicas can be heard (always, for in-process)."""
        return not self.shared or self._listening.is_set()

    def start(self, timeout: float = 10.0) -> None:
        """On PostgreSQL, LISTEN before returning, so nothing committed after start is missed."""
        if not self.shared or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="gridwatch-live-listen", daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout):
            log.warning("live updates: not listening on PostgreSQL after %ss; retrying in the background", timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def announce(self, notice: Notice) -> None:
        """After a commit, from any thread. Never raises: a missed live update loses no data."""
        if not notice:
            return
        try:
            if not self.shared:
                render(self.broadcaster, self.session_factory, notice)
                return
            with self.session_factory() as session:
                for chunk in notice.chunks():
                    session.execute(sa.select(sa.func.pg_notify(CHANNEL, chunk.to_json())))
                session.commit()
        except Exception:
            log.exception("live updates: could not announce %s", notice)

    def _listen(self) -> None:
        import psycopg

        backoff = LISTEN_RETRY_MIN_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    backoff = LISTEN_RETRY_MIN_S
                    while not self._stop.is_set():
                        for notification in conn.notifies(timeout=LISTEN_POLL_S):
                            self._render(notification.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                if self._stop.is_set():
                    return
                log.warning("live updates: PostgreSQL listener lost (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, LISTEN_RETRY_MAX_S)
        self._listening.clear()

    def _render(self, payload: str) -> None:
        try:
            render(self.broadcaster, self.session_factory, Notice.from_json(payload))
        except Exception:
            log.exception("live updates: could not render notice %r", payload[:200])
