"""Which broker of a site's list the node's one paho client talks to, and when it moves.

A site with a broker pair lists both (``mqtt.urls``, in order of preference). paho reconnects by
itself but only ever to one host; its ``on_pre_connect`` hook runs before every attempt, so this
class picks the host there: the same broker after a success, the next one in the list after a
failed attempt or a lost connection. Moving back is deliberate: while on a fallback broker the
publisher asks :meth:`BrokerFailover.preferred_is_back` now and then (a bare CONNECT probe that leaves
nothing behind), and when the first broker answers it ends the fallback connection cleanly (no last
will) and reconnects there. Delivery is the outbox's business: whichever broker the client reaches,
the publisher sends what the outbox holds; a message that both brokers saw is one event to the
server, whose ingest is idempotent on ``event_id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gridwatch.broker.mqtt_url import MqttEndpoint, parse_mqtt_url, speaks_mqtt5

if TYPE_CHECKING:
    import paho.mqtt.client as paho

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0


class BrokerFailover:
    """The ordered brokers and the one in use; :meth:`install` hooks it into a paho client."""

    def __init__(self, urls: Sequence[str], failback_check_s: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.endpoints: list[MqttEndpoint] = [parse_mqtt_url(url) for url in urls]
        if len({endpoint.tls for endpoint in self.endpoints}) > 1:
            raise ValueError("the broker URLs mix mqtt:// and mqtts://")
        self.failback_check_s = failback_check_s
        self.index = 0
        self.moves = 0  # switches from one broker to another (fail-overs and fail-backs)
        self._attempt_failed = False
        self._wanted: int | None = None  # a fail-back asks for this broker on the next attempt
        self._next_check = 0.0
        self._lock = threading.Lock()

    @property
    def current(self) -> MqttEndpoint:
        return self.endpoints[self.index]

    def install(self, client: paho.Client) -> None:
        """Pick the broker before each of paho's attempts; count failures. Call before ``connect_client``,
        which wraps the same callbacks."""
        previous_pre_connect, previous_fail = client.on_pre_connect, client.on_connect_fail

        def pre_connect(c: paho.Client, userdata: Any) -> None:
            self._choose(c)
            if previous_pre_connect is not None:
                previous_pre_connect(c, userdata)

        def connect_fail(c: paho.Client, userdata: Any) -> None:
            self.failed()
            if previous_fail is not None:
                previous_fail(c, userdata)

        client.on_pre_connect, client.on_connect_fail = pre_connect, connect_fail

    def _choose(self, client: paho.Client) -> None:
        with self._lock:
            before = self.index
            if self._wanted is not None:
                self.index, self._wanted = self._wanted, None
            elif self._attempt_failed and len(self.endpoints) > 1:
                self.index = (self.index + 1) % len(self.endpoints)
                log.warning("broker %s failed; trying %s", self.endpoints[before].redacted_url,
                            self.current.redacted_url)
            self._attempt_failed = True  # until a CONNACK says otherwise
            self.moves += self.index != before
            endpoint = self.current
        client._host, client._port = endpoint.host, endpoint.port  # paho's setters refuse while a socket lingers
        client.username_pw_set(endpoint.username, endpoint.password)

    def connected(self) -> None:
        with self._lock:
            self._attempt_failed = False
            self._next_check = time.monotonic() + self.failback_check_s

    def failed(self) -> None:
        """A lost connection or a refused one: the next attempt goes to the next broker."""
        with self._lock:
            self._attempt_failed = True

    def preferred_is_back(self, tls_context: Any = None) -> bool:
        """On a fallback broker and due for a check: does the first broker answer an MQTT CONNECT?"""
        with self._lock:
            if self.index == 0 or time.monotonic() < self._next_check:
                return False
            self._next_check = time.monotonic() + self.failback_check_s
        return speaks_mqtt5(self.endpoints[0], tls_context, timeout=PROBE_TIMEOUT_S) is not None

    def fail_back(self) -> None:
        """The next attempt goes to the first broker (the caller closes the current connection)."""
        with self._lock:
            self._wanted = 0
            self._attempt_failed = False
        log.info("broker %s answers again; moving back to it", self.endpoints[0].redacted_url)
