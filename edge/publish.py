"""Where events go: a JSON-lines file (replay) and/or the MQTT broker (live).

The MQTT side announces the node ``online`` (retained) on connect and leaves ``offline`` as its
last will, uploads each snapshot to the server over HTTP (claim-check: images never ride in MQTT
messages), then publishes the event at QoS 1. paho keeps unacknowledged and not-yet-sent messages
in memory across reconnects.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraStatus, Event, NodeState, NodeStatus, now_utc
from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url
from gridwatch.edge.evidence import Snapshot

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def emit(self, event: Event, snapshot: Snapshot | None) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line, exactly the MQTT payload (with ``source_time_s``)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def emit(self, event: Event, snapshot: Snapshot | None) -> None:
        with self.lock:
            self.stream.write(event.to_json() + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def upload_snapshot(server_url: str, snapshot: Snapshot, timeout: float = 10.0) -> None:
    """PUT the JPEG at /api/snapshots/<sha256>; the server checks the hash, so retries are safe."""
    request = urllib.request.Request(
        f"{server_url.rstrip('/')}/api/snapshots/{snapshot.ref.sha256}",
        data=Path(snapshot.path).read_bytes(),
        method="PUT",
        headers={"Content-Type": snapshot.ref.content_type},
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


class MqttPublisher:
    """A paho client per edge node; thread-safe ``emit`` for all cameras of the node."""

    def __init__(self, site_id: str, node_id: str, url: str, client_id: str | None = None,
                 qos: int = 1, server_url: str | None = None) -> None:
        self.site_id, self.node_id, self.qos, self.server_url = site_id, node_id, qos, server_url
        self.status_topic = topics.node_status_topic(site_id, node_id)
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gridwatch-edge-{site_id}-{node_id}",
            clean_session=False,
        )
        self.client.max_queued_messages_set(0)  # unbounded while offline; the disk outbox comes later
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        connect_client(self.client, parse_mqtt_url(url))
        self.client.loop_start()

    def _status(self, state: NodeState) -> str:
        return NodeStatus(site_id=self.site_id, node_id=self.node_id, state=state, at=now_utc()).to_json()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        client.publish(self.status_topic, self._status(NodeState.ONLINE), qos=1, retain=True)
        self.connected.set()
        log.info("connected to the broker")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def emit(self, event: Event, snapshot: Snapshot | None) -> None:
        if snapshot is not None and self.server_url:
            try:
                upload_snapshot(self.server_url, snapshot)
            except (urllib.error.URLError, OSError) as exc:
                log.warning("snapshot %s not uploaded (%s); the event goes without it", snapshot.ref.sha256, exc)
        topic = topics.events_topic(event.site_id, event.node_id, event.camera_id)
        self.client.publish(topic, event.to_json(), qos=self.qos)

    def publish_camera_status(self, status: CameraStatus) -> None:
        """Retained, so a console that connects later sees every camera's last known health."""
        topic = topics.camera_status_topic(status.site_id, status.node_id, status.camera_id)
        self.client.publish(topic, status.to_json(), qos=1, retain=True)

    def close(self, timeout: float = 10.0) -> None:
        """Announce a clean ``offline`` and wait for it to leave, then stop the network loop."""
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
