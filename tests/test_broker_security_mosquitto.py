"""Issue 8, acceptance 1: a real Mosquitto started from the config `gridwatch broker init` generates.

Mosquitto drops an unauthorised PUBLISH silently (MQTT 3.1.1 still gets a PUBACK), so a refused
publish is proven by a watcher that never receives it, next to a permitted publish from the same
client that does arrive (the positive control). A broker delivers one client's messages in order,
so once the control has arrived the refused one can no longer come.
"""

from __future__ import annotations

import getpass
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from gridwatch.broker import topics
from gridwatch.broker.cli import broker
from gridwatch.broker.mqtt_url import connect_client, parse_mqtt_url
from gridwatch.broker.security.acl import node_commands_topic
from tests.conftest import free_port, wait_for_port

pytestmark = pytest.mark.mosquitto

TIMEOUT = 5.0
NOT_AUTHORIZED = (5, 135)  # CONNACK "not authorised": MQTT 3.1.1 code, MQTT 5 reason code


def cli(*args: str) -> str:
    result = CliRunner().invoke(broker, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@dataclass
class Site:
    """A generated broker directory and the Mosquitto running from its config."""

    directory: Path
    tls_port: int
    local_port: int
    proc: subprocess.Popen[bytes]

    def credentials(self, user: str) -> Path:
        return self.directory / "clients" / user

    def password(self, user: str) -> str:
        return (self.credentials(user) / "password").read_text().strip()


class Client:
    """A paho 2.x client that records what it receives, connected over TLS or the loopback listener."""

    def __init__(self, site: Site, user: str | None, *, tls: bool = True, cert_of: str | None = None,
                 password: str | None = None, client_id: str = "") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack = threading.Event()
        self.disconnected = threading.Event()
        self.reason: mqtt.ReasonCode | None = None
        self._subscribed = threading.Event()
        self._lock = threading.Condition()
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = lambda *args: self.disconnected.set()
        self.paho.on_subscribe = lambda *args: self._subscribed.set()
        auth = ""
        if user is not None:
            secret = site.password(user) if password is None else password
            auth = f"{quote(user, safe='')}:{quote(secret, safe='')}@"
        port = site.tls_port if tls else site.local_port
        context = None
        if tls:
            folder = site.credentials(cert_of or user or "")
            context = ssl.create_default_context(cafile=site.directory / "ca" / "ca.crt")
            context.load_cert_chain(folder / "client.crt", folder / "client.key")
        endpoint = parse_mqtt_url(f"{'mqtts' if tls else 'mqtt'}://{auth}127.0.0.1:{port}")
        connect_client(self.paho, endpoint, keepalive=10, blocking=True, tls_context=context)
        self.paho.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: mqtt.ReasonCode,
                    properties: object) -> None:
        self.reason = reason
        self.connack.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)
            self._lock.notify_all()

    @property
    def accepted(self) -> bool:
        assert self.connack.wait(TIMEOUT), "no CONNACK"
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, *filters: str) -> None:
        for topic_filter in filters:
            self._subscribed.clear()
            self.paho.subscribe(topic_filter, qos=1)
            assert self._subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: str) -> None:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "no PUBACK"

    def wait_for(self, payload: str) -> list[str]:
        """Wait until ``payload`` arrives; return every payload received, in order."""
        with self._lock:
            self._lock.wait_for(lambda: payload in self.payloads(), TIMEOUT)
            assert payload in self.payloads(), f"{payload!r} never arrived; got {self.payloads()}"
        time.sleep(0.2)  # anything queued behind it comes too
        return self.payloads()

    def payloads(self) -> list[str]:
        return [m.payload.decode() for m in self.messages]

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def refused_in_handshake(site: Site, user: str, password: str, cert_folder: Path | None) -> bool:
    """True when the TLS listener drops the connection before any CONNACK (no or revoked certificate)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    connacked = threading.Event()
    client.on_connect = lambda *args: connacked.set()
    context = ssl.create_default_context(cafile=site.directory / "ca" / "ca.crt")
    if cert_folder is not None:
        context.load_cert_chain(cert_folder / "client.crt", cert_folder / "client.key")
    endpoint = parse_mqtt_url(f"mqtts://{quote(user, safe='')}:{password}@127.0.0.1:{site.tls_port}")
    try:
        connect_client(client, endpoint, blocking=True, tls_context=context)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not connacked.is_set():
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:  # TLS 1.3 reports the refusal after the handshake
                break
    except (ssl.SSLError, OSError):
        pass
    finally:
        client.disconnect()
    return not connacked.is_set()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("broker") / "site-broker"
    tls_port, local_port = free_port(), free_port()
    cli("init", "--dir", str(directory), "--hostname", "127.0.0.1", "--tls-port", str(tls_port),
        "--tls-address", "127.0.0.1", "--local-port", str(local_port), "--user", getpass.getuser())
    for site_id, node_id in (("site-a", "node-a"), ("site-a", "node-b"), ("site-b", "node-c")):
        cli("add-node", "--dir", str(directory), "--site", site_id, "--node", node_id)
    cli("add-server", "--dir", str(directory))
    cli("add-integrator", "--dir", str(directory), "--site", "site-a", "--name", "acme")
    log = (directory / "mosquitto.log").open("wb")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is required for this test (apt-get install mosquitto)")
    proc = subprocess.Popen([binary, "-c", str(directory / "broker" / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        wait_for_port(tls_port)
        wait_for_port(local_port)
        yield Site(directory, tls_port, local_port, proc)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def connect(clients: list[Client], site: Site, user: str | None, **kwargs: object) -> Client:
    client = Client(site, user, **kwargs)  # type: ignore[arg-type]
    clients.append(client)
    return client


def watcher(clients: list[Client], site: Site) -> Client:
    """The server, on the loopback listener with its password: sees every event and status."""
    server = connect(clients, site, "server", tls=False)
    assert server.accepted
    server.subscribe(topics.EVENTS_SUBSCRIPTION, *topics.STATUS_SUBSCRIPTIONS)
    return server


def test_node_cannot_publish_on_another_nodes_topics(site: Site, clients: list[Client]) -> None:
    server = watcher(clients, site)
    node_a = connect(clients, site, "node-a@site-a")
    assert node_a.accepted
    node_a.publish(topics.events_topic("site-a", "node-b", "cam-1"), "forged-event")
    node_a.publish(topics.node_status_topic("site-a", "node-b"), "forged-status")
    node_a.publish(topics.events_topic("site-b", "node-a", "cam-1"), "forged-other-site")
    node_a.publish(topics.events_topic("site-a", "node-a", "cam-1"), "own-event")
    assert server.wait_for("own-event") == ["own-event"]


def test_node_reads_only_its_own_commands(site: Site, clients: list[Client]) -> None:
    server = watcher(clients, site)
    node_a = connect(clients, site, "node-a@site-a")
    node_b = connect(clients, site, "node-b@site-a")
    node_a.subscribe(node_commands_topic("site-a", "node-b"), "gridwatch/#")
    node_b.subscribe(node_commands_topic("site-a", "node-b"))
    server.publish(node_commands_topic("site-a", "node-b"), "for-b")
    server.publish(node_commands_topic("site-a", "node-a"), "for-a")
    assert node_b.wait_for("for-b") == ["for-b"]
    assert node_a.wait_for("for-a") == ["for-a"]


def test_integrator_cannot_publish_at_all(site: Site, clients: list[Client]) -> None:
    server = watcher(clients, site)
    node_a = connect(clients, site, "node-a@site-a")
    node_a.subscribe(node_commands_topic("site-a", "node-a"))
    acme = connect(clients, site, "acme@site-a")
    assert acme.accepted
    acme.publish(topics.events_topic("site-a", "node-a", "cam-1"), "integrator-event")
    acme.publish(topics.node_status_topic("site-a", "node-a"), "integrator-status")
    acme.publish(node_commands_topic("site-a", "node-a"), "integrator-command")
    node_a.publish(topics.events_topic("site-a", "node-a", "cam-1"), "control")
    server.publish(node_commands_topic("site-a", "node-a"), "server-command")
    assert server.wait_for("control") == ["control"]
    assert node_a.wait_for("server-command") == ["server-command"]


def test_integrator_reads_its_site_only(site: Site, clients: list[Client]) -> None:
    acme = connect(clients, site, "acme@site-a")
    # The other site by name, everything, and its own site (Mosquitto may refuse the first two outright).
    acme.subscribe("gridwatch/v1/site-b/#", "gridwatch/#", "gridwatch/v1/site-a/#")
    node_c = connect(clients, site, "node-c@site-b")
    node_a = connect(clients, site, "node-a@site-a")
    node_c.publish(topics.events_topic("site-b", "node-c", "cam-1"), "site-b-event")
    node_c.publish(topics.node_status_topic("site-b", "node-c"), "site-b-status")
    time.sleep(0.2)  # two publishers: let site b's messages reach the broker first
    node_a.publish(topics.events_topic("site-a", "node-a", "cam-1"), "site-a-event")
    assert set(acme.wait_for("site-a-event")) == {"site-a-event"}  # overlapping filters may deliver twice


def test_ticket_transitions_come_from_the_server_only(site: Site, clients: list[Client]) -> None:
    acme = connect(clients, site, "acme@site-a")
    acme.subscribe(topics.TICKET_TRANSITIONS_SUBSCRIPTION)
    node_a = connect(clients, site, "node-a@site-a")
    node_a.publish(topics.ticket_transitions_topic("site-a", 7), "forged-transition")
    server = watcher(clients, site)
    server.publish(topics.ticket_transitions_topic("site-b", 8), "other-site-transition")
    server.publish(topics.ticket_transitions_topic("site-a", 7), "transition")
    assert acme.wait_for("transition") == ["transition"]


def test_node_reads_only_its_own_camera_configs(site: Site, clients: list[Client]) -> None:
    """Camera configs come from the server; node B cannot read node A's, node A reads its own, and the
    site's integrator (whose subtree covers them) reads them too."""
    server = connect(clients, site, "server", tls=False)
    assert server.accepted
    node_a = connect(clients, site, "node-a@site-a")
    node_b = connect(clients, site, "node-b@site-a")
    acme = connect(clients, site, "acme@site-a")
    node_a.subscribe(topics.node_configs_filter("site-a", "node-a"))
    # Node B asks for A's configs by name and for everything (Mosquitto may refuse both outright).
    node_b.subscribe(topics.node_configs_filter("site-a", "node-a"), "gridwatch/#",
                     topics.node_configs_filter("site-a", "node-b"))
    acme.subscribe(topics.CONFIGS_FILTER)
    server.publish(topics.camera_config_topic("site-a", "node-a", "cam-1"), "config-for-a")
    server.publish(topics.camera_config_topic("site-a", "node-b", "cam-1"), "config-for-b")
    assert node_b.wait_for("config-for-b") == ["config-for-b"]
    assert node_a.wait_for("config-for-a") == ["config-for-a"]
    assert acme.wait_for("config-for-b") == ["config-for-a", "config-for-b"]


def test_node_cannot_write_camera_configs(site: Site, clients: list[Client]) -> None:
    """Not even its own cameras': a compromised box must not re-arm or disarm its own rules."""
    node_a = connect(clients, site, "node-a@site-a")
    node_b = connect(clients, site, "node-b@site-a")
    node_a.subscribe(topics.node_configs_filter("site-a", "node-a"), node_commands_topic("site-a", "node-a"))
    # publish() waits for the PUBACK, which Mosquitto sends once it has routed (or dropped) the message.
    node_b.publish(topics.camera_config_topic("site-a", "node-a", "cam-1"), "forged-by-b")
    node_a.publish(topics.camera_config_topic("site-a", "node-a", "cam-1"), "forged-by-itself")
    node_a.publish(node_commands_topic("site-a", "node-a"), "control")  # same client: arrives after its forgery
    assert node_a.wait_for("control") == ["control"]


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "loopback"])
def test_anonymous_and_wrong_password_refused(site: Site, clients: list[Client], tls: bool) -> None:
    cert = {"cert_of": "node-a@site-a"} if tls else {}
    anonymous = connect(clients, site, None, tls=tls, **cert)
    assert not anonymous.accepted
    assert anonymous.reason is not None and anonymous.reason.value in NOT_AUTHORIZED
    wrong = connect(clients, site, "node-a@site-a", tls=tls, password="guessed", **cert)
    assert not wrong.accepted
    assert wrong.reason is not None and wrong.reason.value in NOT_AUTHORIZED


def test_password_without_client_certificate_refused(site: Site) -> None:
    assert refused_in_handshake(site, "node-a@site-a", site.password("node-a@site-a"), None)


def test_client_id_cannot_take_over_another_node(site: Site, clients: list[Client]) -> None:
    """The broker replaces every client id with the user name, so node B cannot kick node A off."""
    server = watcher(clients, site)
    node_a = connect(clients, site, "node-a@site-a")
    assert node_a.accepted
    intruder = connect(clients, site, "node-b@site-a", client_id="node-a@site-a")
    assert intruder.accepted
    time.sleep(0.3)
    assert node_a.paho.is_connected()
    node_a.publish(topics.events_topic("site-a", "node-a", "cam-1"), "still-here")
    assert server.wait_for("still-here") == ["still-here"]


def test_revoked_node_refused(site: Site, clients: list[Client]) -> None:
    directory = str(site.directory)
    cli("add-node", "--dir", directory, "--site", "site-a", "--node", "node-r")
    before = connect(clients, site, "node-r@site-a")
    assert before.accepted, "a freshly added node connects once the broker has reloaded"
    folder = site.credentials("node-r@site-a")
    kept = folder.parent / "node-r-kept"  # the box still holds its old certificate and password
    shutil.copytree(folder, kept)

    out = cli("revoke-node", "--dir", directory, "--site", "site-a", "--node", "node-r")
    assert f"reloaded Mosquitto (pid {site.proc.pid})" in out
    assert not folder.exists()
    # The reload is asynchronous; its visible end is the broker dropping the revoked node's connection.
    assert before.disconnected.wait(TIMEOUT), "the connected node was not dropped on reload"

    password = (kept / "password").read_text().strip()
    assert refused_in_handshake(site, "node-r@site-a", password, kept), "the CRL must stop it in the handshake"
    loopback = connect(clients, site, "node-r@site-a", tls=False, password=password)
    assert not loopback.accepted, "its password must be gone"
    assert loopback.reason is not None and loopback.reason.value in NOT_AUTHORIZED


def test_every_node_of_a_site_reads_its_uniform_examples_and_none_writes_them(site: Site,
                                                                             clients: list[Client]) -> None:
    """Uniform examples are the site's: each of its nodes reads them; only the server writes them (a box
    that could would teach itself to open the gate for anyone)."""
    server = connect(clients, site, "server", tls=False)
    node_a = connect(clients, site, "node-a@site-a")
    node_b = connect(clients, site, "node-b@site-a")
    for node in (node_a, node_b):
        node.subscribe(topics.site_uniform_examples_filter("site-a"))
    node_b.publish(topics.uniform_examples_topic("site-a", "meituan"), "forged-by-b")
    server.publish(topics.uniform_examples_topic("site-a", "meituan"), "examples")
    assert node_a.wait_for("examples") == ["examples"]
    assert node_b.wait_for("examples") == ["examples"]
