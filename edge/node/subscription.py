"""A topic the node follows on its one MQTT connection, each message applied on a worker thread.

What the console pushes to a live node (zones, uniform examples) arrives this way. The subscription
rides the publisher's paho client, since a second connection per node would need a second identity in
the broker's ACL. It is renewed on every connect, so a broker that lost the session still delivers the
retained message. paho runs callbacks on its network thread, so messages are queued for a worker:
the work (waiting for a camera's scheduler slot, downloads, model runs) must never stall keepalives
and PUBACKs, and one bad message is logged without ending the updates.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import Any, Self

import paho.mqtt.client as paho

log = logging.getLogger(__name__)

_STOP = object()


class NodeSubscription(ABC):
    """Subclasses say what a message means in :meth:`apply`; this class owns the subscription and the worker."""

    def __init__(self, client: paho.Client, topic_filter: str, *, what: str, stop_timeout_s: float) -> None:
        self.client, self.filter, self.what, self.stop_timeout_s = client, topic_filter, what, stop_timeout_s
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name=f"node-{what.replace(' ', '-')}", daemon=True)

    def start(self) -> Self:
        """Subscribe now if connected, and again on every connect (the retained message comes with it)."""
        self.worker.start()
        self.client.message_callback_add(self.filter, self._on_message)
        previous = self.client.on_connect

        def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if previous is not None:
                previous(client, userdata, flags, reason, properties)
            if not reason.is_failure:
                client.subscribe(self.filter, qos=1)

        self.client.on_connect = on_connect
        if self.client.is_connected():  # a retained message delivered twice is ignored by its version
            self.client.subscribe(self.filter, qos=1)
        return self

    def stop(self) -> None:
        self.client.message_callback_remove(self.filter)
        if self.worker.is_alive():
            self.inbox.put(_STOP)
            self.worker.join(self.stop_timeout_s)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.inbox.put((message.topic, message.payload))

    def _work(self) -> None:
        while (item := self.inbox.get()) is not _STOP:
            try:
                self.apply(*item)
            except Exception:  # one bad message must not end the node's updates
                log.exception("%s on %s not applied", self.what, item[0])

    @abstractmethod
    def apply(self, topic: str, payload: bytes) -> bool:
        """Apply one message; False (and a log line naming why) when nothing changed."""
