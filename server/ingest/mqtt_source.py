"""Ingest's MQTT source: a persistent QoS 1 subscription feeding the ingest worker.

The client keeps a persistent session (clean_session False, a stable client id) so the broker
queues events while the server is away, and each message is acknowledged only after the worker's
database commit (:mod:`~gridwatch.server.ingest.worker`).

Several server replicas share the stream through an MQTT shared subscription
(``$share/<group>/<filter>``, Mosquitto 2 for MQTT 3.1.1 and 5 clients): the broker hands each
message to one of them, and the database's unique keys and correlation locks do the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session

from gridwatch.broker.mqtt_url import TlsFiles, connect_client, new_client, parse_mqtt_url
from gridwatch.server.ingest.store import Batch, IngestContext
from gridwatch.server.ingest.worker import Delivery, IngestSource

log = logging.getLogger(__name__)

QOS = 1
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


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
