"""Which cameras are up: the edge's retained node and camera status messages, kept in memory.

Status is retained on the broker, so a server that starts (or reconnects) hears every node's and
camera's latest state at once; nothing needs to be stored, and the console reads :meth:`snapshot`.
"""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from gridwatch.broker import contract, topics
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, parse_mqtt_url

log = logging.getLogger(__name__)


class CameraStatusBoard:
    """Latest :class:`~gridwatch.broker.contract.CameraStatus` per camera and node state per node."""

    def __init__(self, mqtt_url: str, client_id: str, tls: TlsFiles | None = None) -> None:
        self._endpoint, self._tls = parse_mqtt_url(mqtt_url), tls
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-status-{uuid.uuid4().hex[:6]}",
                                   protocol=mqtt.MQTTv311)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._lock = threading.Lock()
        self._cameras: dict[tuple[str, str, str], contract.CameraStatus] = {}
        self._nodes: dict[tuple[str, str], contract.NodeState] = {}

    def start(self) -> None:
        connect_client(self._client, self._endpoint, tls=self._tls)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None) -> None:
        for subscription in topics.STATUS_SUBSCRIPTIONS:
            client.subscribe(subscription, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return
        try:
            if message.topic.count("/") == 4:  # gridwatch/v1/<site>/<node>/status
                node = contract.NodeStatus.model_validate_json(message.payload)
                with self._lock:
                    self._nodes[(node.site_id, node.node_id)] = node.state
            else:
                camera = contract.CameraStatus.model_validate_json(message.payload)
                with self._lock:
                    self._cameras[(camera.site_id, camera.node_id, camera.camera_id)] = camera
        except ValidationError as exc:
            log.warning("ignoring an invalid status message on %s: %s", message.topic, exc.errors()[0]["msg"])

    def snapshot(self) -> dict[tuple[str, str, str], dict[str, object]]:
        """Per camera: ``online`` (the camera and its node both say so), fps, detail, at."""
        with self._lock:
            out = {}
            for key, status in self._cameras.items():
                node_state = self._nodes.get(key[:2], contract.NodeState.ONLINE)
                online = status.state is contract.NodeState.ONLINE and node_state is contract.NodeState.ONLINE
                out[key] = {"online": online, "fps": status.fps_processed or status.fps_in, "detail": status.detail,
                            "status_at": status.at}
            return out
