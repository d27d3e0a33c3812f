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

Each stored event carries the node's next sequence number (``seq``, the outbox key), so the server
sees a gap when one is lost. When the outbox drops events to stay in its bounds, the publisher says
so with an ``edge_outbox_overflow`` event (camera ``node``, zone ``outbox``; counts per phase and the
time range of what was dropped), stored in the same outbox: at the first drop, then at most every
``overflow_report_s``, and on every reconnect, so a long outage yields a few such events, not one per drop.

With several brokers (a site's pair), the one client moves between them (:mod:`failover`): to the next
when its broker fails, back to the first when that one answers again; the outbox drains wherever it
is connected, so nothing waits for a particular broker to return.

Under MQTT 5 each event also carries its ``event_id`` and ``seq`` as user properties (a bridge or
rule engine can route or deduplicate without parsing JSON), and camera status messages expire
(``status_expiry_s``): a retained ``online`` from a node that died does not linger as truth.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridwatch.broker import blur, topics
from gridwatch.broker.contract import (
    CLIP_FACES_BLURRED_HEADER,
    CLIP_SHA256_HEADER,
    NODE_CAMERA_ID,
    OUTBOX_ZONE_ID,
    CameraStatus,
    Event,
    EventType,
    NodeState,
    NodeStatus,
    Phase,
    now_utc,
)
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, new_client
from gridwatch.edge.delivery.failover import BrokerFailover
from gridwatch.edge.delivery.outbox import DropReport, Outbox, OutboxDepth
from gridwatch.edge.evidence.clips import Clip
from gridwatch.edge.evidence.snapshots import Snapshot, manifest_path

log = logging.getLogger(__name__)
CLIP_UPLOAD_TRIES = 4


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
    """PUT a JPEG at /api/snapshots/<sha256> with its blur manifest (``X-GridWatch-Blur``) when it has one;
    the server checks the hash, so retries are safe, and may refuse an image its privacy policy forbids."""
    headers = {"Content-Type": "image/jpeg"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if (manifest := manifest_path(path)).is_file():
        headers[blur.HEADER] = manifest.read_text(encoding="utf-8")
    request = urllib.request.Request(
        f"{server_url.rstrip('/')}/api/snapshots/{sha256}", data=path.read_bytes(), method="PUT", headers=headers,
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def upload_clip(server_url: str, clip: Clip, token: str | None = None, timeout: float = 30.0) -> None:
    """PUT an event's MP4 clip at /api/clips/<event_id> with its sha256, which the server checks (retries are
    safe: the same clip again is a no-op)."""
    headers = {"Content-Type": "video/mp4", CLIP_SHA256_HEADER: clip.sha256,
               CLIP_FACES_BLURRED_HEADER: "true" if clip.faces_blurred else "false"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{server_url.rstrip('/')}/api/clips/{clip.event_id}",
                                     data=clip.path.read_bytes(), method="PUT", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def log_original_access(server_url: str, sha256: str, actor: str, purpose: str, token: str | None,
                        timeout: float = 10.0) -> None:
    """Write to the server's evidence access log that ``actor`` opens the unblurred original of snapshot
    ``sha256`` on this node, and why; raises unless the server answered that it logged it."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    body = json.dumps({"sha256": sha256, "actor": actor, "purpose": purpose}).encode()
    request = urllib.request.Request(f"{server_url.rstrip('/')}/api/evidence-access", data=body, method="POST",
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status != 201:
            raise RuntimeError(f"the server did not log the access (HTTP {response.status})")


def _timestamp(epoch_s: float | None) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC) if epoch_s is not None else now_utc()


def overflow_event(site_id: str, node_id: str, report: DropReport, depth: OutboxDepth) -> Event:
    """The node's own report that its outbox dropped events: a one-shot incident (phase ``start``,
    which the overflow policy keeps longest), its time range that of the dropped events."""
    attributes: dict[str, float | int | str | bool] = {
        "dropped_total": report.total,
        **{f"dropped_{phase}": report.phases.get(phase, 0) for phase in Phase},
        "first_dropped_at": _timestamp(report.first_at).isoformat(),
        "last_dropped_at": _timestamp(report.last_at).isoformat(),
        "outbox_messages": depth.messages,
        "outbox_bytes": depth.bytes,
    }
    return Event(incident_id=uuid.uuid4().hex, type=EventType.EDGE_OUTBOX_OVERFLOW, phase=Phase.START,
                 site_id=site_id, node_id=node_id, camera_id=NODE_CAMERA_ID, zone_id=OUTBOX_ZONE_ID,
                 started_at=_timestamp(report.first_at), observed_at=now_utc(), attributes=attributes)


def _event_properties(payload: bytes, seq: int | None) -> Properties:
    """MQTT 5 user properties naming the event (ignored by paho under 3.1.1)."""
    properties = Properties(PacketTypes.PUBLISH)
    pairs = [("event_id", str(json.loads(payload).get("event_id", "")))]
    if seq is not None:
        pairs.append(("seq", str(seq)))
    properties.UserProperty = pairs
    return properties


class MqttPublisher:
    """A paho client per edge node; thread-safe ``emit`` for all cameras of the node."""

    def __init__(self, site_id: str, node_id: str, url: str | Sequence[str], client_id: str | None = None,
                 qos: int = 1, server_url: str | None = None, outbox: Outbox | None = None,
                 server_token: str | None = None, reconnect_max_s: float = 30.0, tls: TlsFiles | None = None,
                 status_expiry_s: int = 300, overflow_report_s: float = 60.0, failback_check_s: float = 10.0) -> None:
        """``url``: one broker, or the site's brokers in order of preference."""
        self.site_id, self.node_id, self.qos, self.server_url = site_id, node_id, qos, server_url
        self.server_token = server_token
        self.outbox = outbox
        self.status_expiry_s, self.overflow_report_s = status_expiry_s, overflow_report_s
        self._next_overflow_report = 0.0  # monotonic; the first drop is reported at once
        self.overflow_events = 0
        # (outbox seq, paho's handle) of stored events not yet acknowledged. A watcher polls the
        # handles: a PUBACK callback may run before publish() has returned the id to map it by.
        self._unacked: list[tuple[int, paho.MQTTMessageInfo]] = []
        self._lock = threading.Lock()
        # Held while publishing, so a new event never overtakes the stored ones a reconnect sends.
        self._send_lock = threading.Lock()
        self._overflow_lock = threading.Lock()  # one report at a time (emit and the watcher may both try)
        self._live = False  # connected and the outbox sent: new events may go straight out
        self._flush_due = threading.Event()
        self._closing = threading.Event()
        self.status_topic = topics.node_status_topic(site_id, node_id)
        self.connected = threading.Event()
        self.connects = 0  # successful CONNACKs; every one after the first is a reconnect (a metric)
        self.client = new_client(client_id or f"gridwatch-edge-{site_id}-{node_id}")
        self.client.max_queued_messages_set(0)  # unbounded in memory; the outbox bounds what is kept
        # The longest wait between attempts bounds how long events sit after the uplink returns.
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(reconnect_max_s)))
        self.client.will_set(self.status_topic, self._status(NodeState.OFFLINE), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.failover = BrokerFailover([url] if isinstance(url, str) else url, failback_check_s)
        self.failover.install(self.client)
        self._probe_tls = tls.context() if tls is not None and not tls.empty else None
        connect_client(self.client, self.failover.current, tls=tls, persistent=True)
        self.client.loop_start()
        self._watcher: threading.Thread | None = None
        if outbox is not None:
            self._watcher = threading.Thread(target=self._forget_acknowledged, name="outbox-acks", daemon=True)
            self._watcher.start()

    def _status(self, state: NodeState) -> str:
        return NodeStatus(site_id=self.site_id, node_id=self.node_id, state=state, at=now_utc()).to_json()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.failover.failed()
            log.warning("broker %s refused the connection: %s", self.failover.current.redacted_url, reason_code)
            return
        self.failover.connected()
        client.publish(self.status_topic, self._status(NodeState.ONLINE), qos=1, retain=True)
        self.connects += 1
        self._next_overflow_report = 0.0  # what the outage dropped goes out with the stored events
        self.connected.set()  # before the flush request: the flush sends only while connected
        self._flush_due.set()  # the watcher sends the outbox: a callback must not block paho's loop
        log.info("connected to the broker %s", self.failover.current.redacted_url)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.failover.failed()
        # No _send_lock here: paho may call this while holding its own locks that a flush needs. An
        # event published in between is queued by paho (QoS 1), tracked, and resent by paho itself.
        self._live = False
        log.warning("disconnected from the broker (%s); paho reconnects", reason_code)

    def _send_stored(self, outbox: Outbox) -> None:
        """After a (re)connect: hand paho every stored event it does not hold yet, in order, then go live.

        Events paho still holds from before the drop are its own to resend (clean_session=False)."""
        self._report_overflow()
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
        info = self.client.publish(topic, payload, qos=self.qos, properties=_event_properties(payload, seq))
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
            elif self.failover.preferred_is_back(self._probe_tls):
                self._fail_back()
            elif time.monotonic() >= self._next_overflow_report:
                self._report_overflow()
            self._sweep_acknowledged()
        self._sweep_acknowledged()

    def _fail_back(self) -> None:
        """Leave the fallback broker cleanly (a DISCONNECT, so it publishes no last will) and connect to the
        first one. Events paho holds unacknowledged go out again there; new ones wait in the outbox."""
        with self._send_lock:
            self._live = False
            self.failover.fail_back()
            self.client.disconnect()
            self.client.loop_stop()
            extra = ({"clean_start": self.client._clean_start, "properties": self.client._connect_properties}
                     if self.client.protocol == paho.MQTTv5 else {})
            endpoint = self.failover.endpoints[0]
            self.client.connect_async(endpoint.host, endpoint.port, self.client.keepalive, **extra)
            self.client.loop_start()

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
        """The snapshot, and the clean crop (and plate crop) an event names beside it in the same evidence folder."""
        assert self.server_url is not None
        images = {snapshot.ref.sha256: Path(snapshot.path)}
        if isinstance(crop := event.attributes.get("crop_sha256"), str):
            images[crop] = Path(snapshot.path).with_name(f"{crop}.jpg")
        if event.plate is not None and event.plate.crop_sha256:
            images[event.plate.crop_sha256] = Path(snapshot.path).with_name(f"{event.plate.crop_sha256}.jpg")
        for sha256, path in images.items():
            try:
                upload_image(self.server_url, sha256, path, self.server_token)
            except urllib.error.HTTPError as exc:  # refused (e.g. the site's blur policy): retrying will not help
                reason = exc.read().decode("utf-8", "replace")[:300]
                log.warning("image %s refused by the server (%s %s); the event goes without it", sha256, exc.code,
                            reason)
            except (urllib.error.URLError, OSError) as exc:
                log.warning("image %s not uploaded (%s); the event goes without it", sha256, exc)

    def emit_clip(self, clip: Clip) -> None:
        """Upload an event's clip (called on a camera's clip worker, never on the detection path); a few
        tries, since the event itself is already on its way and only the video would be missing."""
        if not self.server_url:
            return
        for attempt in range(CLIP_UPLOAD_TRIES):
            try:
                upload_clip(self.server_url, clip, self.server_token)
                return
            except urllib.error.HTTPError as exc:  # refused: retrying will not help
                log.warning("clip of event %s refused by the server (%s %s)", clip.event_id, exc.code,
                            exc.read().decode("utf-8", "replace")[:300])
                return
            except (urllib.error.URLError, OSError) as exc:
                log.warning("clip of event %s not uploaded (try %d: %s)", clip.event_id, attempt + 1, exc)
                time.sleep(2.0 ** attempt)

    def emit(self, event: Event, snapshot: Snapshot | None) -> None:
        if snapshot is not None and self.server_url:
            self._upload_evidence(event, snapshot)
        if self.outbox is None:
            self._publish(topics.events_topic(event.site_id, event.node_id, event.camera_id),
                          event.to_json().encode(), None)
            return
        self._store_and_send(event)
        self._report_overflow()

    def _store_and_send(self, event: Event, enforce: bool = True) -> None:
        """Into the outbox under the node's next ``seq``, and out at once while live.

        Both under the send lock, so cameras emitting at once hand paho their events in ``seq``
        order: the server would otherwise see a gap (closed a moment later) at every overtaking."""
        assert self.outbox is not None
        topic = topics.events_topic(event.site_id, event.node_id, event.camera_id)
        stored: list[bytes] = []

        def payload(seq: int) -> bytes:
            stored.append(event.model_copy(update={"seq": seq, "epoch": self.outbox.epoch}).to_json().encode())
            return stored[-1]

        with self._send_lock:
            seq = self.outbox.append(topic, payload, event.phase.value, enforce)
            if self._live:
                self._publish(topic, stored[-1], seq)

    def _report_overflow(self) -> None:
        """Turn the drops since the last report into an ``edge_outbox_overflow`` event, when one is due.

        The report is stored without enforcing the bounds (the next event does), so it never causes
        drops of its own: no report feeds the next one."""
        if self.outbox is None or not self.outbox.unreported_drops or time.monotonic() < self._next_overflow_report:
            return
        with self._overflow_lock:
            report = self.outbox.take_drop_report()
            if not report:
                return
            self._next_overflow_report = time.monotonic() + self.overflow_report_s
            log.warning("outbox full: dropped %s stored events (%s) to stay within its bounds; reporting it",
                        report.total, report.phases)
            self._store_and_send(overflow_event(self.site_id, self.node_id, report, self.outbox.depth()), False)
            self.overflow_events += 1

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def publish_camera_status(self, status: CameraStatus) -> None:
        """Retained, so a console that connects later sees every camera's last known health."""
        topic = topics.camera_status_topic(status.site_id, status.node_id, status.camera_id)
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = self.status_expiry_s  # MQTT 5: a stale status leaves the broker
        self.client.publish(topic, status.to_json(), qos=1, retain=True, properties=properties)

    def close(self, timeout: float = 10.0) -> None:
        """Give stored events up to ``timeout`` to be acknowledged, announce a clean ``offline``,
        then stop; whatever is still unacknowledged stays in the outbox for the next start."""
        deadline = time.monotonic() + timeout
        self._next_overflow_report = 0.0
        self._report_overflow()  # drops not yet reported are stored before the last flush
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
