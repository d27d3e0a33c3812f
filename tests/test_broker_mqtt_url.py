"""The broker URL parser every component uses, and connect_client against a real broker."""

from __future__ import annotations

import socket
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from gridwatch.broker.embedded import EmbeddedBroker
from gridwatch.broker.mqtt_url import MqttEndpoint, connect_client, parse_mqtt_url, redact_url


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://localhost", MqttEndpoint("localhost", 1883)),
    ("mqtt://broker.example:1884", MqttEndpoint("broker.example", 1884)),
    ("mqtts://broker.example", MqttEndpoint("broker.example", 8883, tls=True)),
    ("MQTTS://h:1", MqttEndpoint("h", 1, tls=True)),
    ("mqtt://edge:s3cret@10.0.0.5:1883", MqttEndpoint("10.0.0.5", 1883, False, "edge", "s3cret")),
    ("mqtt://edge@h", MqttEndpoint("h", 1883, username="edge")),
    ("mqtt://ed%40ge:p%3Aw%2Fd@h", MqttEndpoint("h", 1883, username="ed@ge", password="p:w/d")),
    ("mqtt://[::1]:1883", MqttEndpoint("::1", 1883)),
    ("mqtt://h:1883/", MqttEndpoint("h", 1883)),
])
def test_parse(url: str, expected: MqttEndpoint) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(("url", "reason"), [
    ("", "non-empty"),
    ("localhost:1883", "mqtt://"),
    ("tcp://h:1883", "mqtt://"),
    ("http://h", "mqtt://"),
    ("ws://h:9001", "mqtt://"),
    ("mqtt://", "no host"),
    ("mqtt://:1883", "no host"),
    ("mqtt://h:0", "port"),
    ("mqtt://h:65536", "port"),
    ("mqtt://h:abc", "port"),
    ("mqtt://h:", "port"),
    ("mqtt://h/topic", "path"),
    ("mqtt://h?x=1", "query"),
    ("mqtt://h#frag", "fragment"),
    ("mqtt://:pw@h", "no user name"),
    (" mqtt://h", "whitespace"),
    ("mqtt://[::1", "malformed"),
])
def test_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_mqtt_url(url)


def test_password_never_shown() -> None:
    endpoint = parse_mqtt_url("mqtts://edge:s3cret@h:8883")
    assert "s3cret" not in repr(endpoint)
    assert endpoint.redacted_url == "mqtts://edge:***@h:8883"
    assert parse_mqtt_url("mqtt://[::1]").redacted_url == "mqtt://[::1]:1883"


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:Nvr%232024@10.0.0.64:554/Streaming/Channels/101",
     "rtsp://admin:***@10.0.0.64:554/Streaming/Channels/101"),
    ("amqp://gw:secret@[::1]:5672/%2F", "amqp://gw:***@[::1]:5672/%2F"),
    ("rtsp://10.0.0.64/cam/realmonitor?channel=1&subtype=0", "rtsp://10.0.0.64/cam/realmonitor?channel=1&subtype=0"),
])
def test_redact_url_masks_any_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_endpoint_is_frozen() -> None:
    endpoint = parse_mqtt_url("mqtt://h")
    with pytest.raises(AttributeError):
        endpoint.port = 1  # type: ignore[misc]


def connected_within(client: mqtt.Client, timeout: float = 5.0) -> bool:
    """Run the client's network loop until CONNACK (True) or timeout."""
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.loop_start()
    try:
        return connected.wait(timeout) and client.is_connected()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("blocking", [True, False])
@pytest.mark.parametrize("credentials", ["", "edge:pw@"])
def test_connect_client_reaches_broker(blocking: bool, credentials: str) -> None:
    with EmbeddedBroker(port=0) as broker:
        endpoint = parse_mqtt_url(broker.url.replace("mqtt://", f"mqtt://{credentials}"))
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        connect_client(client, endpoint, keepalive=5, blocking=blocking)
        assert connected_within(client)


def test_connect_client_blocking_fails_fast_without_broker() -> None:
    with EmbeddedBroker(port=0) as broker:
        url = broker.url
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(ConnectionRefusedError):
        connect_client(client, parse_mqtt_url(url), blocking=True)


def test_mqtts_applies_tls() -> None:
    """An mqtts:// endpoint must speak TLS: a plaintext server answering it fails the handshake."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer_in_plaintext() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)  # the TLS ClientHello
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_in_plaintext, daemon=True)
        thread.start()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        with pytest.raises(ssl.SSLError):
            connect_client(client, parse_mqtt_url(f"mqtts://127.0.0.1:{port}"), blocking=True)
        thread.join(5)
