"""MQTT 5 where the broker speaks it, 3.1.1 where it does not, and TLS files: the one connect path
(broker/mqtt_url.py) that edge and server share, against real brokers.

Mosquitto speaks MQTT 5: a persistent session (clean start off, session expiry) keeps QoS 1
messages while the client is away, events carry ``event_id`` and ``seq`` as user properties, camera
status expires. The embedded amqtt broker speaks 3.1.1 only (it never answers a v5 CONNECT): the
probe finds that out before connecting, and a client that met it without a probe (the broker came
up later) falls back after one unanswered CONNECT. TLS uses the files `gridwatch broker init`
generates, with client certificates required.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
import yaml

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraStatus, Event, NodeState
from gridwatch.broker.embedded import EmbeddedBroker
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, new_client, parse_mqtt_url, speaks_mqtt5
from gridwatch.edge.config import ConfigError, parse_config
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import MqttPublisher
from tests.conftest import Mosquitto, free_port
from tests.reliability_helpers import Server, wait_for
from tests.test_broker_security_mosquitto import Site, clients, site, watcher  # noqa: F401  (fixtures)

TIMEOUT = 10.0


def event() -> Event:
    now = datetime.now(UTC)
    return Event(incident_id=uuid.uuid4().hex, type="loitering", phase="start", site_id="site-a", node_id="node-a",
                 camera_id="cam-1", zone_id="lobby", started_at=now, observed_at=now)


class Listener:
    """A client made and connected the way edge and server make theirs, recording what it receives."""

    def __init__(self, url: str, client_id: str, *, persistent: bool = False, keepalive: int = 10) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.connacks: list[tuple[mqtt.ConnectFlags, mqtt.ReasonCode]] = []
        self.connected = threading.Event()
        self.client = new_client(client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, message: self.messages.append(message)
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        connect_client(self.client, parse_mqtt_url(url), keepalive, persistent=persistent)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, reason: mqtt.ReasonCode,
                    properties: object) -> None:
        self.connacks.append((flags, reason))
        if not reason.is_failure:
            client.subscribe([(topics.EVENTS_SUBSCRIPTION, 1), ("gridwatch/v1/+/+/+/status", 1)])
            self.connected.set()

    def payload_topics(self) -> list[str]:
        return [m.topic for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mosquitto_gets_mqtt5_with_user_properties_and_status_expiry(tmp_path: Path, mosquitto: Mosquitto) -> None:
    assert speaks_mqtt5(parse_mqtt_url(mosquitto.url)) is True
    listener = Listener(mosquitto.url, "mqtt5-listener")
    publisher = MqttPublisher("site-a", "node-a", mosquitto.url, client_id="mqtt5-edge",
                              outbox=Outbox(tmp_path / "outbox.db"), status_expiry_s=45)
    try:
        assert listener.connected.wait(TIMEOUT) and publisher.connected.wait(TIMEOUT)
        assert wait_for(lambda: publisher._live, bool, TIMEOUT)
        sent = event()
        publisher.emit(sent, None)
        publisher.publish_camera_status(CameraStatus(site_id="site-a", node_id="node-a", camera_id="cam-1",
                                                     state=NodeState.ONLINE, at=datetime.now(UTC), frames_in=1,
                                                     frames_detected=1, inference_ms=5.0))
        assert wait_for(lambda: len(listener.messages), lambda n: n >= 2, TIMEOUT) >= 2
    finally:
        publisher.close(5)
        listener.close()
    assert publisher.client.protocol == listener.client.protocol == mqtt.MQTTv5
    by_topic = {m.topic: m for m in listener.messages}
    delivered = by_topic[topics.events_topic("site-a", "node-a", "cam-1")]
    assert Event.model_validate_json(delivered.payload).seq == 1  # the outbox's number, in the payload...
    assert dict(delivered.properties.UserProperty) == {"event_id": sent.event_id, "seq": "1"}  # ...and beside it
    status = by_topic[topics.camera_status_topic("site-a", "node-a", "cam-1")]
    assert 0 < status.properties.MessageExpiryInterval <= 45


def test_mqtt5_persistent_session_keeps_messages_while_away(mosquitto: Mosquitto) -> None:
    away = Listener(mosquitto.url, "mqtt5-persistent", persistent=True)
    sender = Listener(mosquitto.url, "mqtt5-sender")
    try:
        assert away.connected.wait(TIMEOUT) and sender.connected.wait(TIMEOUT)
        assert not away.connacks[0][0].session_present
        wait_for(lambda: away.client.subscribe(topics.EVENTS_SUBSCRIPTION, 1)[0], lambda rc: rc == 0, TIMEOUT)
        away.close()
        topic = topics.events_topic("site-a", "node-a", "cam-9")
        sender.client.publish(topic, b"while-away", qos=1).wait_for_publish(TIMEOUT)
        back = Listener(mosquitto.url, "mqtt5-persistent", persistent=True)
        try:
            assert wait_for(back.payload_topics, lambda t: topic in t, TIMEOUT), "the session lost the message"
            assert back.connacks[0][0].session_present  # clean start off + session expiry: the broker kept it
        finally:
            back.close()
    finally:
        sender.close()


def test_embedded_broker_without_mqtt5_gets_mqtt311_end_to_end(tmp_path: Path) -> None:
    with EmbeddedBroker(port=0) as broker:
        assert speaks_mqtt5(parse_mqtt_url(broker.url)) is False
        listener = Listener(broker.url, "fallback-listener")
        publisher = MqttPublisher("site-a", "node-a", broker.url, client_id="fallback-edge",
                                  outbox=Outbox(tmp_path / "outbox.db"))
        try:
            assert listener.connected.wait(TIMEOUT) and publisher.connected.wait(TIMEOUT)
            assert wait_for(lambda: publisher._live, bool, TIMEOUT)
            sent = event()
            publisher.emit(sent, None)
            assert wait_for(lambda: listener.messages, bool, TIMEOUT)
        finally:
            publisher.close(5)
            listener.close()
    assert publisher.client.protocol == listener.client.protocol == mqtt.MQTTv311
    assert Event.model_validate_json(listener.messages[0].payload).event_id == sent.event_id


def test_a_client_falls_back_when_its_mqtt5_connect_goes_unanswered() -> None:
    """The broker is not up at the probe; when it comes, it is one that never answers a v5 CONNECT."""
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    assert speaks_mqtt5(parse_mqtt_url(url)) is None
    listener = Listener(url, "late-broker-client", persistent=True, keepalive=2)
    assert listener.client.protocol == mqtt.MQTTv5
    with EmbeddedBroker(port=port):
        try:
            assert listener.connected.wait(30), "never connected after the fallback"
        finally:
            listener.close()
    assert listener.client.protocol == mqtt.MQTTv311


def tls_url(broker: Site, user: str) -> str:
    return f"mqtts://{quote(user, safe='')}:{quote(broker.password(user), safe='')}@127.0.0.1:{broker.tls_port}"


def test_edge_and_server_over_tls_with_client_certificates(tmp_path: Path, site: Site, clients,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge publishes over the TLS listener with its certificate (TlsFiles from its config), and the
    server ingests over TLS with its own (GRIDWATCH_MQTT_CA_FILE / _CERT_FILE / _KEY_FILE)."""
    watching = watcher(clients, site)
    folder, ca = site.credentials("node-a@site-a"), str(site.directory / "ca" / "ca.crt")
    for name, value in (("CA_FILE", ca), ("CERT_FILE", site.credentials("server") / "client.crt"),
                        ("KEY_FILE", site.credentials("server") / "client.key")):
        monkeypatch.setenv(f"GRIDWATCH_MQTT_{name}", str(value))
    server = Server(tmp_path / "server", tls_url(site, "server"))
    publisher = MqttPublisher("site-a", "node-a", tls_url(site, "node-a@site-a"), client_id="tls-edge",
                              outbox=Outbox(tmp_path / "outbox.db"),
                              tls=TlsFiles(ca, str(folder / "client.crt"), str(folder / "client.key")))
    try:
        assert publisher.connected.wait(TIMEOUT), "no TLS connection with the node's certificate"
        assert wait_for(lambda: server.get("/api/health")["mqtt"]["subscribed"], bool, TIMEOUT), "server not on TLS"
        sent = event()
        publisher.emit(sent, None)
        assert wait_for(watching.payloads, lambda p: any(sent.event_id in x for x in p), TIMEOUT), "never arrived"
        stored = wait_for(server.events, bool, TIMEOUT)
    finally:
        publisher.close(5)
        server.stop()
    assert publisher.client.protocol == mqtt.MQTTv5
    assert [e["event_id"] for e in stored] == [sent.event_id] and stored[0]["payload"]["seq"] == 1


def test_edge_config_tls_files_are_resolved_and_checked(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_text("x")
    base = yaml.safe_load((Path(__file__).parent / "data" / "table-zone.yaml").read_text())
    config = parse_config({**base, "mqtt": {"url": "mqtts://broker:8883", "tls": {"ca_file": "certs/ca.crt"}}},
                          base_dir=tmp_path)
    assert config.mqtt.tls.ca_file == str(tmp_path / "certs" / "ca.crt")
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.cert_file: no such file"):
        parse_config({**base, "mqtt": {"url": "mqtts://broker:8883", "tls": {"cert_file": "certs/none.crt"}}},
                     base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"mqtt: .*url must start with mqtts://"):
        parse_config({**base, "mqtt": {"url": "mqtt://broker", "tls": {"ca_file": "certs/ca.crt"}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"mqtt\.tls: .*key_file needs cert_file"):
        parse_config({**base, "mqtt": {"url": "mqtts://broker", "tls": {"key_file": "certs/ca.crt"}}},
                     base_dir=tmp_path)
