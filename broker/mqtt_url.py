"""The one parser for broker URLs (``mqtt://[user:pass@]host[:port]``, ``mqtts://...``).

Edge, server and the demo all take the broker as a single URL setting. Parsing it in one place
means a typo fails the same way everywhere, at start-up and with a message that says what is wrong,
instead of surfacing later as a paho connection error with no context.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    import paho.mqtt.client as paho

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach a broker. The password stays out of ``repr`` so it never hits a log."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def redacted_url(self) -> str:
        """The URL with the password masked: for logs and messages, not for connecting."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":***"
            auth += "@"
        return f"{scheme}://{auth}{host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse a broker URL; raise ValueError naming the problem for anything that is not one.

    Accepted: ``mqtt://host``, ``mqtt://host:port``, ``mqtts://user:pass@host:port``, IPv6 as
    ``mqtt://[::1]:1883``. User and password may be percent-encoded. Anything else (another scheme,
    a path, a query, a password without a user) is rejected rather than silently ignored.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"broker URL must be a non-empty string like mqtt://host:1883, got {url!r}")
    if url != url.strip():
        raise ValueError(f"broker URL {url!r} has leading or trailing whitespace")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced '[' in an IPv6 host
        raise ValueError(f"broker URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r} must not have a path, query or fragment")
    host = parts.hostname
    if not host:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r} has an invalid port (use 1-65535)") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise ValueError(f"broker URL {url!r} has an empty port")
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError(f"broker URL {url!r} has an invalid port {port} (use 1-65535)")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        # MQTT 3.1.1 forbids a password without a user name [MQTT-3.1.2-22].
        raise ValueError(f"broker URL {url!r} has a password but no user name")
    return MqttEndpoint(host=host, port=port, tls=scheme == "mqtts", username=username or None,
                        password=password)


def connect_client(
    client: paho.Client,
    endpoint: MqttEndpoint,
    keepalive: int = 30,
    *,
    blocking: bool = False,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Apply credentials and TLS from ``endpoint`` to a paho 2.x client, then connect.

    With ``blocking=False`` (the default) this calls ``connect_async``: the network loop
    (``loop_start``/``loop_forever``) connects and keeps reconnecting, so a box that boots before
    its broker still comes up. ``blocking=True`` calls ``connect`` and raises at once if the broker
    is unreachable, which suits command-line tools. ``tls_context`` overrides the default
    (system CAs, hostname checked) for a private CA.
    """
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set_context(tls_context or ssl.create_default_context())
    if blocking:
        client.connect(endpoint.host, endpoint.port, keepalive)
    else:
        client.connect_async(endpoint.host, endpoint.port, keepalive)
