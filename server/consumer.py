"""Ingest's one database worker, and its MQTT source: a persistent QoS 1 subscription feeding it.

Delivery is at-least-once end to end: the client keeps a persistent session (clean_session False,
a stable client id) so the broker queues events while the server is away, and each message is
acknowledged only after its database commit, so a crash mid-ingest means redelivery, and
:func:`gridwatch.server.ingest.store_messages` makes redelivery harmless. paho's network thread only
enqueues; the worker owns the database so a slow commit never delays keepalives. The worker takes
whatever has queued up (up to ``BATCH_MAX``) into one transaction: under load, commits get fewer
and larger instead of the queue growing; when idle, each event is still committed on its own.

Several server replicas share the stream through an MQTT shared subscription
(``$share/<group>/<filter>``, Mosquitto 2 for MQTT 3.1.1 and 5 clients): the broker hands each
message to one of them, and the database's unique keys and correlation locks do the rest.

:class:`IngestWorker` knows nothing of MQTT: a source hands it :class:`Delivery` objects and gets
them back, committed, through its ``acknowledge`` callback. The clustered broker's source
(:mod:`gridwatch.server.amqp_source`) feeds the same worker; :func:`create_ingest` picks the source
from the settings.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session

from gridwatch.broker.mqtt_url import TlsFiles, connect_client, new_client, parse_mqtt_url
from gridwatch.server.ingest import Batch, IngestContext, IngestStatus, store_messages

if TYPE_CHECKING:
    from gridwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)

QOS = 1
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
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


def create_ingest(
    settings: ServerSettings,
    *,
    session_factory: Callable[[], Session],
    context: IngestContext | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> IngestSource:
    """The ingest source the settings ask for: MQTT (one broker, or Mosquitto with shared
    subscriptions) or AMQP (the clustered broker, ``deploy/cluster/README.md``)."""
    if settings.ingest_source == "amqp":
        from gridwatch.server.amqp_source import AmqpIngest  # pika only where the cluster is used

        return AmqpIngest(urls=settings.amqp_url_list, queue_name=settings.amqp_queue,
                          session_factory=session_factory, context=context, on_batch=on_batch)
    return MqttIngest(mqtt_url=settings.mqtt_url, client_id=settings.mqtt_client_id,
                      subscription=settings.subscription, session_factory=session_factory, context=context,
                      on_batch=on_batch, tls=settings.mqtt_tls)


class MqttIngest(IngestSource):
    """Subscribe to the events topics and store every message; call :meth:`start` / :meth:`stop`.

    ``on_batch``: see :class:`IngestWorker`.
    """

    def __init__(
        self,
        *,
        mqtt_url: str,
        client_id: str,
        subscription: str,
        session_factory: Callable[[], Session],
        context: IngestContext | None = None,
        on_batch: Callable[[Batch], None] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self._endpoint = parse_mqtt_url(mqtt_url)
        self.url = self._endpoint.redacted_url
        self.subscription = subscription
        super().__init__(session_factory=session_factory, context=context, on_batch=on_batch)
        self._connection = 0

        self._tls = tls
        # MQTT 5 (3.1.1 where the broker has no v5); a persistent session either way: see connect_client.
        client = new_client(client_id, manual_ack=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the network thread; connecting (and reconnecting) is in the
        background, so the server starts even when the broker is not up yet."""
        self._worker.start()
        connect_client(self._client, self._endpoint, KEEPALIVE_S, tls=self._tls, persistent=True)
        self._client.loop_start()
        log.info("ingest subscribing to %s on %s", self.subscription, self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish (and acknowledge) what was received, then disconnect; the rest stays queued
        at the broker for the next start."""
        self._worker.stop(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._subscribed.clear()

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, _properties: object) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.url, reason_code)
            return
        self._connection += 1
        self._connected.set()
        log.info("connected to %s (session present: %s)", self.url, flags.session_present)
        client.subscribe(self.subscription, qos=QOS)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        log.warning("cannot reach the MQTT broker at %s; retrying (backoff up to %ss)", self.url, RECONNECT_MAX_S)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int,
                      reason_codes: list[mqtt.ReasonCode], _properties: object) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused subscription %s: %s", self.subscription, reason_codes)
            return
        self._subscribed.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason_code: mqtt.ReasonCode, _properties: object) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if self._worker.accepting:
            log.warning("lost MQTT connection to %s (%s); reconnecting", self.url, reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if not self._worker.accepting:
            return  # not acknowledged: the broker redelivers it to our next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        # A packet id is only valid on the connection that delivered it.
        self._worker.submit(Delivery(topic, bytes(message.payload), (message.mid, message.qos, self._connection)))

    # -- acknowledgements (worker thread) ---------------------------------------------------

    def _acknowledge(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            mid, qos, connection = delivery.token  # type: ignore[misc]
            if connection == self._connection and self.connected:
                self._client.ack(mid, qos)
