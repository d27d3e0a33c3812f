"""Ingest's one database worker, and what every broker source feeding it must provide.

Delivery is at-least-once end to end: each message is acknowledged to its broker only after its
database commit, so a crash mid-ingest means redelivery, and
:func:`gridwatch.server.ingest.store.store_messages` makes redelivery harmless. A source's network
thread only enqueues; the worker owns the database so a slow commit never delays keepalives. The
worker takes whatever has queued up (up to ``BATCH_MAX``) into one transaction: under load, commits
get fewer and larger instead of the queue growing; when idle, each event is still committed on its own.

:class:`IngestWorker` knows nothing of MQTT or AMQP: a source (:mod:`~gridwatch.server.ingest.mqtt_source`,
:mod:`~gridwatch.server.ingest.amqp_source`) hands it :class:`Delivery` objects and gets them back,
committed, through its ``acknowledge`` callback.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from gridwatch.server.ingest.store import Batch, IngestContext, IngestStatus, store_messages

log = logging.getLogger(__name__)

DB_RETRY_MAX_S = 30.0
QUEUE_SIZE = 20_000
# A ticket's row is read and updated once per batch for all of its events in it, and each batch has a fixed
# cost (a dozen statements, a commit), so under load bigger batches cost less per event: 2,000 stored ~1.5x
# the events/s of 500, and 5,000 took 16 % less CPU per event than 2,000 (server and PostgreSQL together).
# Idle, each event is still committed on its own; at 6,000 events/s a full batch is under a second.
BATCH_MAX = 5000


@dataclass(frozen=True)
class Delivery:
    """One received message; ``token`` is whatever its source needs to acknowledge it."""

    topic: str
    payload: bytes
    token: object


class IngestSource(ABC):
    """A broker's stream of events feeding one :class:`IngestWorker`; what the server (health, probes,
    shutdown) needs from it. A source hands each message to ``self._worker.submit`` and acknowledges
    to its broker in :meth:`_acknowledge`, which the worker calls after the database commit."""

    url: str
    subscription: str

    def __init__(self, *, session_factory: Callable[[], Session], context: IngestContext | None,
                 on_batch: Callable[[Batch], None] | None) -> None:
        self._worker = IngestWorker(session_factory=session_factory, acknowledge=self._acknowledge,
                                    context=context, on_batch=on_batch)
        self._connected = threading.Event()
        self._subscribed = threading.Event()

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self, timeout: float = 10.0) -> None: ...

    @abstractmethod
    def _acknowledge(self, deliveries: list[Delivery]) -> None: ...

    @property
    def counts(self) -> dict[str, int]:
        return self._worker.counts

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)


class IngestWorker:
    """One thread that stores what sources receive, in batches, and acknowledges after each commit.

    Sources call :meth:`submit` from their network thread (it blocks when ``QUEUE_SIZE`` messages
    wait, which is the back-pressure: the broker stops sending). ``acknowledge`` runs in the worker
    thread with a committed batch's deliveries; ``on_batch`` after it (live updates, publishing ticket
    transitions), its failures logged, never allowed to block acknowledgements.
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[], Session],
        acknowledge: Callable[[list[Delivery]], None],
        context: IngestContext | None = None,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._acknowledge = acknowledge
        self._context = context
        self._on_batch = on_batch
        self._queue: queue.Queue[Delivery | None] = queue.Queue(QUEUE_SIZE)
        self._stopping = threading.Event()
        self.accepting = True
        self._thread: threading.Thread | None = None
        self.counts = {"stored": 0, "duplicates": 0, "dead_lettered": 0, "errors": 0}

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="gridwatch-ingest", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def stop(self, timeout: float = 10.0) -> None:
        """Store (and acknowledge) what was received, then end; anything not acknowledged stays
        with the broker for redelivery."""
        self.accepting = False
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
        self._stopping.set()  # abandon a stuck database retry: its message stays unacknowledged
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    delivery = self._queue.get_nowait()
                except queue.Empty:
                    break
                if delivery is None:
                    self._handle(batch)
                    return
                batch.append(delivery)
            self._handle(batch)

    def _handle(self, deliveries: list[Delivery]) -> None:
        batch = self._store_with_retry(deliveries)
        if batch is None:
            return
        try:
            self._acknowledge(deliveries)
        except Exception:  # the broker redelivers; event_id makes that harmless
            log.exception("acknowledging %d committed messages failed", len(deliveries))
        for outcome in batch.outcomes:
            key = {IngestStatus.STORED: "stored", IngestStatus.DUPLICATE: "duplicates",
                   IngestStatus.DEAD_LETTERED: "dead_lettered"}[outcome.status]
            self.counts[key] += 1
        if self._on_batch is not None:
            try:
                self._on_batch(batch)
            except Exception:
                log.exception("live update after a batch of %d failed", len(deliveries))

    def _store_with_retry(self, deliveries: list[Delivery]) -> Batch | None:
        """Store, retrying database failures with backoff; None if stopped before success."""
        delay = 0.5
        messages = [(d.topic, d.payload) for d in deliveries]
        while not self._stopping.is_set():
            try:
                with self._session_factory() as session:
                    return store_messages(session, messages, context=self._context)
            except Exception:
                self.counts["errors"] += 1
                if not self.accepting:  # shutting down: leave it to the broker's redelivery
                    log.exception("storing %d messages failed during shutdown", len(messages))
                    return None
                log.exception("storing %d messages failed; retrying in %.1fs", len(messages), delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)
        return None
