"""Live updates: the ingest thread announces ticket changes, SSE clients on the event loop hear them.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 256


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


def announce_ticket(
    broadcaster: Broadcaster, session_factory: Callable[[], Session], ticket_id: int, created: bool
) -> None:
    """Publish a ``ticket`` message with the ticket as the REST API shows it (after its commit)."""
    from gridwatch.server.models import Ticket
    from gridwatch.server.schemas import TicketOut

    with session_factory() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return
        data = TicketOut.model_validate(ticket).model_dump(mode="json")
    broadcaster.publish("ticket", {"action": "created" if created else "updated", "ticket": data})


def announce_events(broadcaster: Broadcaster, session_factory: Callable[[], Session], event_ids: list[str]) -> None:
    """Publish an ``event`` message per newly stored camera event (the live feed), as the REST API shows it."""
    if not event_ids:
        return
    from gridwatch.server.models import EventRecord
    from gridwatch.server.schemas import EventOut

    with session_factory() as session:
        rows = session.scalars(sa.select(EventRecord).where(EventRecord.event_id.in_(event_ids))
                               .order_by(EventRecord.id))
        messages = [EventOut.model_validate(row).model_dump(mode="json") for row in rows]
    for data in messages:
        broadcaster.publish("event", data)
