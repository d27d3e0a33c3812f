"""Where events go: a JSON-lines file (replay) and/or the MQTT broker (live).

The MQTT side announces the node ``online`` (retained) on connect and leaves ``offline`` as its
last will, uploads each snapshot to the server over HTTP (claim-check: images never ride in MQTT
messages), then publishes the event at QoS 1. paho keeps unacknowledged messages only in memory,
so with an ``Outbox`` every event is stored on disk first and deleted once the broker acknowledged
it; what a crash or power cut leaves behind is sent again when the publisher next starts.

With an outbox, nothing is handed to paho while the link is down: paho's queue is unbounded and
would hold a days-long outage in memory, and an event the outbox drops to stay in its bounds would
still go out from there. Each (re)connect sends what the outbox holds, in order, and only then do
new events go straight out again.
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
                 server_token: str | None = None, reconnect_max_s: float = 30.0) -> None:
        self.site_id, self.node_id, self.qos, self.server_url = site_id, node_id, qos, server_url
        self.server_token = server_token
        self.outbox = outbox
        # (outbox seq, paho's handle) of stored events not yet acknowledged. A watcher polls the
        # handles: a PUBACK callback may run before publish() has returned the id to map it by.
        self._unacked: list[tuple[int, paho.MQTTMessageInfo]] = []
        self._lock = threading.Lock()
        # Held while publishing, so a new event never overtakes the stored ones a reconnect sends.
        self._send_lock = threading.Lock()
        self._live = False  # connected and the outbox sent: new events may go straight out
        self._flush_due = threading.Event()
        self._closing = threading.Event()
        self.status_topic = topics.node_status_topic(site_id, node_id)
        self.connected = threading.Event()
        self.connects = 0  # successful CONNACKs; every one after the first is a reconnect (a metric)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"gridwatch-edge-{site_id}-{node_id}",
            clean_session=False,
        )
        self.client.max_queued_messages_set(0)  # unbounded in memory; the outbox bounds what is kept
        # The longest wait between attempts bounds how long events sit after the uplink returns.
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(reconnect_max_s)))
        self.client.will_set(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        connect_client(self.client, parse_mqtt_url(url))
        self.client.loop_start()
        self._watcher: threading.Thread | None = None
        if outbox is not None:
            self._watcher = threading.Thread(target=self._forget_acknowledged, name="outbox-acks", daemon=True)
            self._watcher.start()

    def _status(self, state: NodeState) -> str:
        return NodeStatus(site_id=self.site_id, node_id=self.node_id, state=state, at=now_utc()).to_json()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        client.publish(self.status_topic, self._status(NodeState.ONLINE), qos=1, retain=True)
        self.connects += 1
        self.connected.set()  # before the flush request: the flush sends only while connected
        self._flush_due.set()  # the watcher sends the outbox: a callback must not block paho's loop
        log.info("connected to the broker")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        # No _send_lock here: paho may call this while holding its own locks that a flush needs. An
        # event published in between is queued by paho (QoS 1), tracked, and resent by paho itself.
        self._live = False
        log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def _send_stored(self, outbox: Outbox) -> None:
        """After a (re)connect: hand paho every stored event it does not hold yet, in order, then go live.

        Events paho still holds from before the drop are its own to resend (clean_session=False)."""
        with self._send_lock:
            with self._lock:
                held = {seq for seq, _ in self._unacked}
            last, sent = 0, 0
            while self.connected.is_set() and (batch := outbox.pending(after_seq=last, limit=500)):
                for message in batch:
                    if message.seq not in held:
                        self._publish(message.topic, message.payload, message.seq)
                        sent += 1
                last = batch[-1].seq
            self._live = self.connected.is_set()
        if sent:
            log.info("sent %d stored events from the outbox", sent)

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
        """Send the outbox after each connect; delete from it what the broker acknowledged (PUBACK)."""
        assert self.outbox is not None
        while not self._closing.wait(period_s):
            if self._flush_due.is_set():
                self._flush_due.clear()
                self._send_stored(self.outbox)
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
        if self.outbox is None:
            self._publish(topic, payload, None)
            return
        seq = self.outbox.append(topic, payload, event.phase.value)
        with self._send_lock:
            if self._live:
                self._publish(topic, payload, seq)
        if (dropped := self.outbox.take_drop_report()):
            log.warning("outbox full: dropped %s stored events to stay within its bounds", dropped)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def publish_camera_status(self, status: CameraStatus) -> None:
        """Retained, so a console that connects later sees every camera's last known health."""
        topic = topics.camera_status_topic(status.site_id, status.node_id, status.camera_id)
        self.client.publish(topic, status.to_json(), qos=1, retain=True)

    def close(self, timeout: float = 10.0) -> None:
        """Give stored events up to ``timeout`` to be acknowledged, announce a clean ``offline``,
        then stop; whatever is still unacknowledged stays in the outbox for the next start."""
        deadline = time.monotonic() + timeout
        while (self._unacked or (self.outbox is not None and self.outbox.depth().messages)) \
                and time.monotonic() < deadline:
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
