"""Where events go: a JSON-lines file (replay) and/or the MQTT broker (live).

The MQTT side announces the node ``online`` (retained) on connect and leaves ``offline`` as its
last will, uploads each snapshot to the server over HTTP (claim-check: images never ride in MQTT
messages), then publishes the event at QoS 1. paho keeps unacknowledged messages only in memory,
so with an ``Outbox`` every event is stored on disk first and deleted once the broker acknowledged
it; what a crash or power cut leaves behind is sent again when the publisher next starts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
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
from gridwatch.edge.outbox import Outbox

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


def upload_image(server_url: str, sha256: str, path: Path, token: str | None = None, timeout: float = 10.0) -> None:
    """PUT a JPEG at /api/snapshots/<sha256>; the server checks the hash, so retries are safe."""
    headers = {"Content-Type": "image/jpeg"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{server_url.rstrip('/')}/api/snapshots/{sha256}", data=path.read_bytes(), method="PUT", headers=headers,
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


class MqttPublisher:
    """A paho client per edge node; thread-safe ``emit`` for all cameras of the node."""

    def __init__(self, site_id: str, node_id: str, url: str, client_id: str | None = None,
                 qos: int = 1, server_url: str | None = None, outbox: Outbox | None = None,
                 server_token: str | None = None) -> None:
        self.site_id, self.node_id, self.qos, self.server_url = site_id, node_id, qos, server_url
        self.server_token = server_token
        self.outbox = outbox
        # (outbox seq, paho's handle) of stored events not yet acknowledged. A watcher polls the
        # handles: a PUBACK callback may run before publish() has returned the id to map it by.
        self._unacked: list[tuple[int, paho.MQTTMessageInfo]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.status_topic = topics.node_status_topic(site_id, node_id)
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gridwatch-edge-{site_id}-{node_id}",
            clean_session=False,
        )
        self.client.max_queued_messages_set(0)  # unbounded in memory; the outbox bounds what is kept
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        connect_client(self.client, parse_mqtt_url(url))
        self.client.loop_start()
        self._watcher: threading.Thread | None = None
        if outbox is not None:
            self._resend_stored(outbox)
            self._watcher = threading.Thread(target=self._forget_acknowledged, name="outbox-acks", daemon=True)
            self._watcher.start()

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

    def _resend_stored(self, outbox: Outbox) -> None:
        """Queue what a previous run stored but never saw acknowledged, in its original order."""
        last = 0
        while batch := outbox.pending(after_seq=last, limit=500):
            for message in batch:
                self._publish(message.topic, message.payload, message.seq)
            last = batch[-1].seq
        if last:
            log.info("resending %d stored events from the outbox", outbox.depth().messages)

    def _publish(self, topic: str, payload: bytes, seq: int | None) -> None:
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc == paho.MQTT_ERR_NO_CONN and self.qos > 0:
            # Offline, paho keeps a QoS >= 1 message queued and sends it on reconnect; its handle
            # still turns published on the PUBACK, but is_published() raises while rc says NO_CONN.
            info.rc = paho.MQTT_ERR_SUCCESS
        if seq is not None:
            with self._lock:
                self._unacked.append((seq, info))

    def _forget_acknowledged(self, period_s: float = 0.1) -> None:
        """Delete from the outbox what the broker has acknowledged (the QoS 1 PUBACK)."""
        while not self._closing.wait(period_s):
            self._sweep_acknowledged()
        self._sweep_acknowledged()

    def _sweep_acknowledged(self) -> None:
        assert self.outbox is not None
        done, waiting = [], []
        with self._lock:
            for seq, info in self._unacked:
                (done if info.is_published() else waiting).append((seq, info))
            self._unacked = waiting
        for seq, _ in done:
            self.outbox.remove(seq)

    def _upload_evidence(self, event: Event, snapshot: Snapshot) -> None:
        """The snapshot, and the clean crop an event names beside it in the same evidence folder."""
        assert self.server_url is not None
        images = {snapshot.ref.sha256: Path(snapshot.path)}
        if isinstance(crop := event.attributes.get("crop_sha256"), str):
            images[crop] = Path(snapshot.path).with_name(f"{crop}.jpg")
        for sha256, path in images.items():
            try:
                upload_image(self.server_url, sha256, path, self.server_token)
            except (urllib.error.URLError, OSError) as exc:
                log.warning("image %s not uploaded (%s); the event goes without it", sha256, exc)

    def emit(self, event: Event, snapshot: Snapshot | None) -> None:
        if snapshot is not None and self.server_url:
            self._upload_evidence(event, snapshot)
        topic = topics.events_topic(event.site_id, event.node_id, event.camera_id)
        payload = event.to_json().encode()
        seq = self.outbox.append(topic, payload, event.phase.value) if self.outbox is not None else None
        self._publish(topic, payload, seq)
        if self.outbox is not None and (dropped := self.outbox.take_drop_report()):
            log.warning("outbox full: dropped %s stored events to stay within its bounds", dropped)

    def publish_camera_status(self, status: CameraStatus) -> None:
        """Retained, so a console that connects later sees every camera's last known health."""
        topic = topics.camera_status_topic(status.site_id, status.node_id, status.camera_id)
        self.client.publish(topic, status.to_json(), qos=1, retain=True)

    def close(self, timeout: float = 10.0) -> None:
        """Give stored events up to ``timeout`` to be acknowledged, announce a clean ``offline``,
        then stop; whatever is still unacknowledged stays in the outbox for the next start."""
        deadline = time.monotonic() + timeout
        while self._unacked and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # link dropped: the last will says offline
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
