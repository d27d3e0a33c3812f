"""The one parser for broker URLs (``mqtt://[user:pass@]host[:port]``, ``mqtts://...``) and the one
way edge and server connect to a broker.

Edge, server and the demo all take the broker as a single URL setting. Parsing it in one place
means a typo fails the same way everywhere, at start-up and with a message that says what is wrong,
instead of surfacing later as a paho connection error with no context.

Connecting is here too, so edge and server share one protocol policy: MQTT 5 where the broker
speaks it (clean start off with a session expiry, so the broker keeps a persistent session for a
bounded time instead of forever; user properties; message expiry), MQTT 3.1.1 where it does not.
The embedded amqtt broker, for one, reads a v5 CONNECT as a malformed 3.1.1 one and never answers.
:func:`connect_client` therefore asks the broker first with a throwaway CONNECT (no credentials, a
clean start, nothing left behind), and a client that still gets no CONNACK to a v5 CONNECT (the
broker was not up at the probe) drops to 3.1.1 for its next attempt, as paho itself drops 3.1.1 to 3.1.
"""

from __future__ import annotations

import logging
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import paho.mqtt.client as paho

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# How long the broker keeps a persistent session (and its queued QoS 1 messages) while the client is away.
SESSION_EXPIRY_S = 7 * 24 * 3600
PROBE_TIMEOUT_S = 3.0
_REFUSED_PROTOCOL = (0x01, 0x84)  # CONNACK "unacceptable protocol version": 3.1.1 code, MQTT 5 reason code


def redact_url(url: str) -> str:
    """Any URL with its password masked (AMQP nodes, RTSP cameras): the one way a credentialled URL
    reaches a log, a status payload or an error message. The user stays, so an installer can tell
    which account a camera or broker was given."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


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


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and/or a client certificate for ``mqtts://`` (Mosquitto's ``require_certificate``).

    Checked when made, so a wrong path is reported at start-up naming the setting, not as a TLS
    error on the first connect."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{name}: no such file {value!r}")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: given without cert_file")

    @property
    def empty(self) -> bool:
        return self.ca_file is None and self.cert_file is None

    def context(self) -> ssl.SSLContext:
        """System CAs (or ``ca_file``), hostname checked, the client certificate when given."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def new_client(client_id: str, *, manual_ack: bool = False) -> paho.Client:
    """A paho 2.x client that starts out speaking MQTT 5; :func:`connect_client` may drop it to 3.1.1."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                       manual_ack=manual_ack)


def speaks_mqtt5(endpoint: MqttEndpoint, tls_context: ssl.SSLContext | None = None,
                 timeout: float = PROBE_TIMEOUT_S) -> bool | None:
    """Ask the broker with a bare MQTT 5 CONNECT; None when it cannot be reached (say, not up yet).

    A CONNACK that refuses the protocol version, a closed connection or silence mean no MQTT 5;
    any other CONNACK (accepted, or refused for want of credentials, which the probe never sends)
    means the broker parsed the v5 packet."""
    client_id = f"gridwatch-probe-{uuid.uuid4().hex[:12]}".encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(client_id).to_bytes(2, "big") + client_id
    try:
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError:
        return None
    try:
        sock: socket.socket = raw
        if endpoint.tls:
            context = tls_context or ssl.create_default_context()
            sock = context.wrap_socket(raw, server_hostname=endpoint.host)
        sock.settimeout(timeout)
        sock.sendall(bytes([0x10, len(body)]) + body)
        answer = _read(sock, 4)
        if len(answer) < 4 or answer[0] != 0x20:
            return False
        if answer[3] in _REFUSED_PROTOCOL:
            return False
        if answer[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT: the clean-start session ends with it
        return True
    except (OSError, ssl.SSLError):
        return None if endpoint.tls else False  # a TLS handshake error is not the broker's protocol
    finally:
        raw.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    try:
        while len(data) < size and (chunk := sock.recv(size - len(data))):
            data += chunk
    except TimeoutError:
        pass
    return data


def use_mqtt311(client: paho.Client, persistent: bool) -> None:
    """Switch a client made by :func:`new_client` to MQTT 3.1.1 for its next CONNECT.

    paho fixes the protocol when a client is made and only ever downgrades 3.1.1 to 3.1 by itself;
    its own downgrade sets the same field. ``persistent`` keeps the session (clean_session off)."""
    import paho.mqtt.client as paho

    client._protocol = paho.MQTTv311
    client._clean_session = not persistent
    client._connect_properties = None


def _fall_back_without_connack(client: paho.Client, persistent: bool) -> None:
    """If a v5 CONNECT gets no CONNACK at all (the connection closes or keepalive runs out first),
    the next attempt speaks 3.1.1: wraps the caller's on_connect/on_disconnect, which must be set."""
    import paho.mqtt.client as paho

    state = {"connacked": False}
    on_connect, on_disconnect, on_pre_connect = client.on_connect, client.on_disconnect, client.on_pre_connect

    def pre_connect(c: paho.Client, userdata: Any) -> None:
        state["connacked"] = False
        if on_pre_connect is not None:
            on_pre_connect(c, userdata)

    def connected(c: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        state["connacked"] = True
        if c.protocol == paho.MQTTv5 and reason.is_failure and reason.value in _REFUSED_PROTOCOL:
            log.warning("the broker refuses MQTT 5 (%s); using MQTT 3.1.1", reason)
            use_mqtt311(c, persistent)
        if on_connect is not None:
            on_connect(c, userdata, flags, reason, properties)

    def disconnected(c: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not state["connacked"] and c.protocol == paho.MQTTv5:
            log.warning("no CONNACK to an MQTT 5 CONNECT (%s); using MQTT 3.1.1", reason)
            use_mqtt311(c, persistent)
        if on_disconnect is not None:
            on_disconnect(c, userdata, flags, reason, properties)

    client.on_pre_connect, client.on_connect, client.on_disconnect = pre_connect, connected, disconnected


def connect_client(
    client: paho.Client,
    endpoint: MqttEndpoint,
    keepalive: int = 30,
    *,
    blocking: bool = False,
    tls_context: ssl.SSLContext | None = None,
    tls: TlsFiles | None = None,
    persistent: bool = False,
) -> None:
    """Apply credentials and TLS from ``endpoint`` to a paho 2.x client, then connect.

    With ``blocking=False`` (the default) this calls ``connect_async``: the network loop
    (``loop_start``/``loop_forever``) connects and keeps reconnecting, so a box that boots before
    its broker still comes up. ``blocking=True`` calls ``connect`` and raises at once if the broker
    is unreachable, which suits command-line tools. ``tls`` (files from a config) or ``tls_context``
    override the default (system CAs, hostname checked) for a private CA and client certificates.

    A client from :func:`new_client` speaks MQTT 5 when the broker does, else 3.1.1 (see the
    module docstring). ``persistent`` asks for a session that outlives the connection: clean
    start off with ``SESSION_EXPIRY_S`` under MQTT 5, clean_session off under 3.1.1.
    """
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if tls is not None and not tls.empty and not endpoint.tls:
        raise ValueError(f"TLS files are set but the broker URL {endpoint.redacted_url} is not mqtts://")
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    context = tls_context or (tls.context() if tls is not None else None)
    if endpoint.tls:
        client.tls_set_context(context or ssl.create_default_context())
    extra: dict[str, Any] = {}
    if client.protocol == paho.MQTTv5:
        if speaks_mqtt5(endpoint, context) is False:
            log.info("broker %s does not speak MQTT 5; using MQTT 3.1.1", endpoint.redacted_url)
            use_mqtt311(client, persistent)
        else:
            _fall_back_without_connack(client, persistent)
            properties = Properties(PacketTypes.CONNECT)
            if persistent:
                properties.SessionExpiryInterval = SESSION_EXPIRY_S
            extra = {"clean_start": not persistent, "properties": properties}
    if blocking:
        client.connect(endpoint.host, endpoint.port, keepalive, **extra)
    else:
        client.connect_async(endpoint.host, endpoint.port, keepalive, **extra)
