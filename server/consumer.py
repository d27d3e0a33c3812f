"""The MQTT side of ingest: a persistent QoS 1 subscription feeding one database worker thread.

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
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url
from gridwatch.server.ingest import Batch, IngestContext, IngestStatus, store_messages

log = logging.getLogger(__name__)

QOS = 1
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
DB_RETRY_MAX_S = 30.0
QUEUE_SIZE = 10_000
# A ticket's row is read and updated once per batch for all of its events in it, so under load bigger
# batches mean fewer ticket updates per event: 2,000 stored ~1.5x the events/s of 500 (bench/ingest_bench.py).
BATCH_MAX = 2000


@dataclass(frozen=True)
class _Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: a packet id is only valid on that one


class MqttIngest:
    """Subscribe to the events topics and store every message; call :meth:`start` / :meth:`stop`.

    ``on_batch`` runs in the worker thread after each committed batch (live updates, publishing
    ticket transitions); its failures are logged, never allowed to block acknowledgements.
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
    ) -> None:
        self._endpoint = parse_mqtt_url(mqtt_url)
        self.url = self._endpoint.redacted_url
        self.subscription = subscription
        self._session_factory = session_factory
        self._context = context
        self._on_batch = on_batch
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(QUEUE_SIZE)
        self._stopping = threading.Event()
        self._accepting = True
        self._connection = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._worker: threading.Thread | None = None
        self.counts = {"stored": 0, "duplicates": 0, "dead_lettered": 0, "errors": 0}

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
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
        self._worker = threading.Thread(target=self._work, name="gridwatch-ingest", daemon=True)
        self._worker.start()
        connect_client(self._client, self._endpoint, KEEPALIVE_S)
        self._client.loop_start()
        log.info("ingest subscribing to %s on %s", self.subscription, self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish (and acknowledge) what was received, then disconnect; the rest stays queued
        at the broker for the next start."""
        self._accepting = False
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
        self._stopping.set()  # abandon a stuck database retry: its message stays unacknowledged
        if self._worker is not None:
            self._worker.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._subscribed.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

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
        if not self._stopping.is_set() and self._accepting:
            log.warning("lost MQTT connection to %s (%s); reconnecting", self.url, reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return  # not acknowledged: the broker redelivers it to our next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")
        self._queue.put(_Delivery(topic, bytes(message.payload), message.mid, message.qos, self._connection))

    # -- worker thread ---------------------------------------------------------------------

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

    def _handle(self, deliveries: list[_Delivery]) -> None:
        batch = self._store_with_retry(deliveries)
        if batch is None:
            return
        for delivery in deliveries:
            if delivery.connection == self._connection and self.connected:
                self._client.ack(delivery.mid, delivery.qos)
        for outcome in batch.outcomes:
            key = {IngestStatus.STORED: "stored", IngestStatus.DUPLICATE: "duplicates",
                   IngestStatus.DEAD_LETTERED: "dead_lettered"}[outcome.status]
            self.counts[key] += 1
        if self._on_batch is not None:
            try:
                self._on_batch(batch)
            except Exception:
                log.exception("live update after a batch of %d failed", len(deliveries))

    def _store_with_retry(self, deliveries: list[_Delivery]) -> Batch | None:
        """Store, retrying database failures with backoff; None if stopped before success."""
        delay = 0.5
        messages = [(d.topic, d.payload) for d in deliveries]
        while not self._stopping.is_set():
            try:
                with self._session_factory() as session:
                    return store_messages(session, messages, context=self._context)
            except Exception:
                self.counts["errors"] += 1
                if not self._accepting:  # shutting down: leave it to the broker's redelivery
                    log.exception("storing %d messages failed during shutdown", len(messages))
                    return None
                log.exception("storing %d messages failed; retrying in %.1fs", len(messages), delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)
        return None
