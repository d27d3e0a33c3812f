"""The embedded amqtt broker with real paho clients: the delivery guarantees the edge and server rely on.

QoS 1 events to a persistent subscriber, retained node status, the last will, and a clean stop.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from gridwatch.broker.embedded import BrokerUnavailableError, EmbeddedBroker
from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url

TIMEOUT = 5.0


class Client:
    """A paho 2.x client on its own network thread that records every message it receives."""

    def __init__(self, url: str, client_id: str | None = None, *, clean_session: bool = True,
                 will: tuple[str, str] | None = None, manual_ack: bool = False) -> None:
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self.messages: list[mqtt.MQTTMessage] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                clean_session=clean_session, manual_ack=manual_ack)
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = lambda *args: self._subscribed.set()
        if will:
            self.paho.will_set(will[0], will[1], qos=1, retain=True)
        connect_client(self.paho, parse_mqtt_url(url), blocking=True)
        self.paho.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def subscribe(self, topic_filter: str) -> None:
        self._subscribed.clear()
        self.paho.subscribe(topic_filter, qos=1)
        assert self._subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "no PUBACK"

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def settle(self, quiet: float = 0.3) -> list[mqtt.MQTTMessage]:
        """Everything received once nothing new has arrived for ``quiet`` seconds (to catch duplicates)."""
        while True:
            seen = len(self.messages)
            time.sleep(quiet)
            if len(self.messages) == seen:
                return list(self.messages)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT, as a box losing power does."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(port=0) as embedded:
        yield embedded


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def test_qos1_fifty_messages_exactly_once_in_order(broker: EmbeddedBroker, clients: list[Client]) -> None:
    subscriber = Client(broker.url, "server-ingest", clean_session=False)
    publisher = Client(broker.url, "edge-node-1")
    clients += [subscriber, publisher]
    subscriber.subscribe("gridwatch/v1/+/+/+/events")

    topic = "gridwatch/v1/site-1/node-1/cam-1/events"
    for i in range(50):
        publisher.publish(topic, f"event-{i}")

    subscriber.wait_for(50)
    received = subscriber.settle()
    assert [m.payload.decode() for m in received] == [f"event-{i}" for i in range(50)]
    assert {(m.topic, m.qos, m.retain) for m in received} == {(topic, 1, False)}


def test_retained_status_reaches_late_subscriber_once(broker: EmbeddedBroker, clients: list[Client]) -> None:
    early = Client(broker.url)
    clients.append(early)
    early.subscribe("gridwatch/v1/+/+/status")  # another client's filter must not leak to the late one
    publisher = Client(broker.url, "edge-node-1")
    clients.append(publisher)
    publisher.publish("gridwatch/v1/site-1/node-1/status", "online", retain=True)
    publisher.publish("gridwatch/v1/site-1/node-1/status", "online-2", retain=True)  # replaces the first

    late = Client(broker.url)
    clients.append(late)
    assert late.settle() == [], "retained messages arrived before any SUBSCRIBE"
    late.subscribe("gridwatch/v1/+/+/status")
    late.wait_for(1)
    received = late.settle()
    assert [(m.topic, m.payload, m.retain) for m in received] == [
        ("gridwatch/v1/site-1/node-1/status", b"online-2", True)
    ]
    # The early subscriber got both live, as ordinary (non-retained) deliveries.
    assert [(m.payload, m.retain) for m in early.wait_for(2)] == [(b"online", False), (b"online-2", False)]


def test_last_will_is_published_and_retained(broker: EmbeddedBroker, clients: list[Client]) -> None:
    topic = "gridwatch/v1/site-1/node-1/status"
    node = Client(broker.url, "edge-node-1", will=(topic, "offline"))
    node.publish(topic, "online", retain=True)
    node.drop()

    watcher = Client(broker.url)
    clients.append(watcher)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the will fires once the broker notices the dropped socket
        watcher.subscribe(topic)
        last = watcher.wait_for(1)[-1]
        if last.payload == b"offline" or time.monotonic() > deadline:
            break
        watcher.paho.unsubscribe(topic)
        time.sleep(0.1)
    assert (last.payload, last.retain) == (b"offline", True)


def test_persistent_session_gets_messages_queued_while_offline(
    broker: EmbeddedBroker, clients: list[Client]
) -> None:
    subscriber = Client(broker.url, "server-ingest", clean_session=False)
    subscriber.subscribe("gridwatch/v1/+/+/+/events")
    subscriber.close()
    time.sleep(0.3)  # let the broker mark the session offline

    publisher = Client(broker.url, "edge-node-1")
    clients.append(publisher)
    for i in range(5):
        publisher.publish("gridwatch/v1/site-1/node-1/cam-1/events", f"queued-{i}")

    back = Client(broker.url, "server-ingest", clean_session=False)  # no new SUBSCRIBE
    clients.append(back)
    back.wait_for(5)
    received = back.settle()
    assert [m.payload.decode() for m in received] == [f"queued-{i}" for i in range(5)]
    assert all(m.qos == 1 and not m.retain for m in received)


def test_unacknowledged_message_redelivered_to_resumed_session(
    broker: EmbeddedBroker, clients: list[Client]
) -> None:
    """The server acknowledges only after its commit: a crash before that must not lose the event."""
    subscriber = Client(broker.url, "server-ingest", clean_session=False, manual_ack=True)
    subscriber.subscribe("gridwatch/v1/+/+/+/events")
    publisher = Client(broker.url, "edge-node-1")
    clients.append(publisher)
    publisher.publish("gridwatch/v1/site-1/node-1/cam-1/events", "unacked")
    publisher.publish("gridwatch/v1/site-1/node-1/cam-1/events", "unacked-2")
    assert [m.payload for m in subscriber.wait_for(2)] == [b"unacked", b"unacked-2"]
    subscriber.drop()  # gone without PUBACK
    publisher.publish("gridwatch/v1/site-1/node-1/cam-1/events", "while-away")

    back = Client(broker.url, "server-ingest", clean_session=False)
    clients.append(back)
    back.wait_for(3)
    assert [m.payload for m in back.settle()] == [b"unacked", b"unacked-2", b"while-away"]


def test_stop_closes_port_and_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    embedded = EmbeddedBroker(port=0).start()
    assert embedded.running
    port = embedded.port
    assert embedded.url == f"mqtt://127.0.0.1:{port}"
    client = Client(embedded.url)  # a connected client must not hold the shutdown up
    started = time.monotonic()
    embedded.stop()
    client.paho.loop_stop()
    assert time.monotonic() - started < 5
    assert not embedded.running
    assert {t.name for t in threading.enumerate()} <= before
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "port still accepts connections"
    embedded.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = embedded.port


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        embedded = EmbeddedBroker(port=port)
        with pytest.raises(BrokerUnavailableError, match=str(port)):
            embedded.start()
        assert not embedded.running


def test_restart_after_stop(clients: list[Client]) -> None:
    embedded = EmbeddedBroker(port=0)
    for _ in range(2):
        with embedded:
            client = Client(embedded.url)
            client.subscribe("x/#")
            client.publish("x/1", "hello")
            assert [m.payload for m in client.wait_for(1)] == [b"hello"]
            client.close()
