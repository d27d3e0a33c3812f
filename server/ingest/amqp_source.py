"""Ingest from the clustered broker: server replicas share one RabbitMQ quorum queue over AMQP.

Edge boxes publish over MQTT to any node of the cluster; RabbitMQ's MQTT plugin routes each
message into ``amq.topic`` and from there into the quorum queue declared here, replicated on three
nodes, and confirms it to the edge (PUBACK) only once the queue has it on a majority of them
(measured in ``deploy/cluster/README.md``). Every replica consumes from that one queue: RabbitMQ
hands each message to exactly one consumer, and it is acknowledged only after the replica's
database commit, so a replica that dies leaves its unacknowledged messages to be redelivered to
another one, and ``event_id`` makes that redelivery harmless. The batching worker is the same
:class:`~gridwatch.server.ingest.worker.IngestWorker` the MQTT source feeds.

pika's ``BlockingConnection`` is not thread-safe: the connection thread does all AMQP I/O, and the
worker's acknowledgements are handed to it with ``add_callback_threadsafe``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable

import pika
import pika.channel
import pika.exceptions
import pika.spec
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.broker.mqtt_url import redact_url
from gridwatch.server.ingest.store import Batch, IngestContext
from gridwatch.server.ingest.worker import BATCH_MAX, QUEUE_SIZE, Delivery, IngestSource

log = logging.getLogger(__name__)

EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes
# RabbitMQ turns MQTT's '/' into '.', so gridwatch/v1/+/+/+/events is gridwatch.v1.*.*.*.events; '#' also
# catches an id containing '.', which then fails the topic check and is dead-lettered, not silently dropped.
ROUTING_KEY = topics.PREFIX.replace("/", ".") + ".#.events"
# Enough unacknowledged messages in flight per replica for two full batches, never more than the worker's queue.
PREFETCH = min(2 * BATCH_MAX, QUEUE_SIZE)
QUORUM_SIZE = 3
HEARTBEAT_S = 30
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0


def declare_events_queue(channel: pika.channel.Channel, queue_name: str) -> None:
    """The durable quorum queue every replica shares, bound to the events topics; idempotent.

    It must exist before edge boxes publish: RabbitMQ confirms a message that no queue takes.
    """
    channel.queue_declare(queue_name, durable=True, arguments={
        "x-queue-type": "quorum", "x-quorum-initial-group-size": QUORUM_SIZE})
    channel.queue_bind(queue_name, EXCHANGE, routing_key=ROUTING_KEY)


def declare_on(urls: list[str], queue_name: str) -> None:
    """Declare the events queue through the first node that answers (cluster setup, tests)."""
    errors = []
    for url in urls:
        try:
            with pika.BlockingConnection(pika.URLParameters(url)) as connection:
                declare_events_queue(connection.channel(), queue_name)
                return
        except pika.exceptions.AMQPError as exc:
            errors.append(f"{redact_url(url)}: {exc!r}")
    raise ConnectionError("no AMQP node accepted the queue declaration: " + "; ".join(errors))


def mqtt_topic(routing_key: str) -> str:
    """The MQTT topic a routing key came from (the reverse of the plugin's '/' to '.')."""
    return routing_key.replace(".", "/")


class AmqpIngest(IngestSource):
    """Consume the shared events queue and store every message; same interface as ``MqttIngest``."""

    def __init__(
        self,
        *,
        urls: list[str],
        queue_name: str,
        session_factory: Callable[[], Session],
        context: IngestContext | None = None,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> None:
        if not urls:
            raise ValueError("amqp_urls: at least one amqp:// URL is needed")
        self._urls = urls
        self.url = ",".join(redact_url(u) for u in urls)
        self.queue_name = queue_name
        self.subscription = f"{queue_name} (quorum queue on {EXCHANGE} {ROUTING_KEY})"
        super().__init__(session_factory=session_factory, context=context, on_batch=on_batch)
        self._closing = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._generation = 0  # a delivery tag is only valid on the channel that delivered it
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the connection thread; it connects (and fails over between the
        nodes) in the background, so the server starts even when the cluster is not up yet."""
        self._worker.start()
        self._thread = threading.Thread(target=self._run, name="gridwatch-amqp", daemon=True)
        self._thread.start()
        log.info("ingest consuming %s from %s", self.subscription, self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish (and acknowledge) what was received, then close; the rest is redelivered to
        another replica."""
        self._worker.stop(timeout)
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._connected.clear()
        self._subscribed.clear()

    # -- connection thread -----------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        delay = RECONNECT_MIN_S
        while not self._closing.is_set():
            url = self._urls[attempt % len(self._urls)]
            attempt += 1
            try:
                self._consume(url)
                delay = RECONNECT_MIN_S
            except pika.exceptions.AMQPError as exc:
                if not self._closing.is_set():
                    log.warning("AMQP node %s: %r; trying the next node", redact_url(url), exc)
            finally:
                self._connected.clear()
                self._subscribed.clear()
                self._connection = None
            if attempt % len(self._urls) == 0:  # every node tried: back off before the next round
                self._closing.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    def _consume(self, url: str) -> None:
        parameters = pika.URLParameters(url)
        parameters.heartbeat = HEARTBEAT_S
        parameters.connection_attempts = 1
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            declare_events_queue(channel, self.queue_name)
            channel.basic_qos(prefetch_count=PREFETCH)
            self._generation += 1
            generation = self._generation
            channel.basic_consume(self.queue_name, functools.partial(self._on_message, generation))
            self._connection = connection
            self._connected.set()
            self._subscribed.set()
            log.info("consuming %s on %s", self.queue_name, redact_url(url))
            while not self._closing.is_set():
                connection.process_data_events(time_limit=0.2)
            connection.process_data_events(time_limit=0)  # the acknowledgements the worker queued last
        finally:
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()

    def _on_message(self, generation: int, channel: pika.channel.Channel, method: pika.spec.Basic.Deliver,
                    _properties: pika.spec.BasicProperties, body: bytes) -> None:
        if not self._worker.accepting:
            return  # not acknowledged: requeued for another replica when this channel closes
        token = (generation, channel, method.delivery_tag)
        self._worker.submit(Delivery(mqtt_topic(method.routing_key), body, token))

    # -- acknowledgements (worker thread) ---------------------------------------------------

    def _acknowledge(self, deliveries: list[Delivery]) -> None:
        connection = self._connection
        if connection is None or not deliveries:
            return  # the channel is gone: RabbitMQ requeues these, and event_id makes them harmless
        tokens = [d.token for d in deliveries]
        try:
            connection.add_callback_threadsafe(functools.partial(self._ack, tokens))
        except pika.exceptions.AMQPError:
            log.warning("connection closed before %d messages could be acknowledged", len(tokens))

    def _ack(self, tokens: list[tuple[int, pika.channel.Channel, int]]) -> None:
        """In the connection thread: acknowledge what the current channel delivered."""
        for generation, channel, tag in tokens:
            if generation == self._generation and channel.is_open:
                channel.basic_ack(tag)
