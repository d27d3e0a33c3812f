"""``gridwatch broker``: run the embedded broker, keep the JSON Schemas in step, show the topic tree,
and generate a hardened Mosquitto setup (``init``, ``add-*``, ``revoke-*``).

Only click, the standard library and gridwatch.broker are imported here; amqtt and cryptography (the
``broker`` extra) are loaded only by the commands that need them, so ``gridwatch`` works on boxes that
never host a broker.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType, ModuleType

import click

from gridwatch.broker import topics
from gridwatch.broker.embedded import BrokerUnavailableError, EmbeddedBroker
from gridwatch.broker.schemas import SCHEMA_DIR, render, schema_documents, write_schemas


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def broker() -> None:
    """The MQTT contract and a single-process broker for demos and small sites."""


@broker.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", default=1883, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port; 0 picks a free one.")
def run(host: str, port: int) -> None:
    """Run the embedded MQTT broker in the foreground until Ctrl-C or SIGTERM.

    Anonymous, plain TCP, in memory: for demos and development. Sites run Mosquitto with
    broker/mosquitto/gridwatch.conf.
    """
    # amqtt logs every connection at INFO; keep that for `gridwatch -v` only.
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    embedded = EmbeddedBroker(host, port, log_level=None if verbose else logging.WARNING)
    try:
        embedded.start()
    except BrokerUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    click.echo(f"GridWatch MQTT broker listening on {embedded.url} (Ctrl-C to stop)", err=True)
    try:
        # Wake up now and then: a broker thread that died must end the command, not hang it.
        while not stop.wait(0.5) and embedded.running:
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        crashed = not embedded.running and not stop.is_set()
        embedded.stop()
    if crashed:
        raise click.ClickException("the embedded broker stopped unexpectedly")
    click.echo("broker stopped", err=True)


@broker.command()
@click.option("--check/--write", default=False,
              help="--check: compare with the files and exit 1 if any differ; --write (default): write them.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=SCHEMA_DIR,
              show_default="broker/schemas", help="Where the schema files live.")
def schemas(check: bool, directory: Path) -> None:
    """Generate the payload JSON Schemas (broker/schemas/*.json) from the contract models.

    Run after changing broker/contract.py; CI runs --check so the published schemas never drift
    from the models the code validates with.
    """
    if not check:
        for path in write_schemas(directory):
            click.echo(f"wrote {path}")
        return
    expected = {name: render(doc) for name, doc in schema_documents().items()}
    problems = []
    for name, text in sorted(expected.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the models")
    if directory.is_dir():
        problems.extend(f"{path}: not generated from any model; remove it"
                        for path in sorted(directory.glob("*.json")) if path.name not in expected)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        click.echo("run `gridwatch broker schemas` to regenerate", err=True)
        raise SystemExit(1)
    click.echo(f"{len(expected)} schema files up to date in {directory}")


@broker.command()
@click.option("--check/--write", default=False,
              help="--check: exit 1 if the committed files differ from the code; --write (default): write them.")
def asyncapi(check: bool) -> None:
    """Generate the AsyncAPI 3 document (broker/asyncapi/asyncapi.yaml) and its Markdown page.

    Both are built from topics.py, the contract models and broker/asyncapi/channels.py; run after
    changing any of them (and after `gridwatch broker schemas`, whose files the document references).
    """
    from gridwatch.broker.asyncapi.document import generated_files

    files = generated_files()
    if not check:
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
            click.echo(f"wrote {path}")
        return
    stale = [path for path, text in files.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    for path in stale:
        click.echo(f"{path}: differs from the code", err=True)
    if stale:
        click.echo("run `gridwatch broker asyncapi` to regenerate", err=True)
        raise SystemExit(1)
    click.echo(f"{len(files)} AsyncAPI files up to date")


@broker.command("topics")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def topics_command(as_json: bool) -> None:
    """Print the MQTT topic tree, what each topic carries and what to subscribe to."""
    from gridwatch.broker.asyncapi.channels import CHANNELS
    from gridwatch.broker.asyncapi.document import address

    tree = [{"topic": address(channel)[0], "payload": f"{channel.payload}.v1.json", "qos": channel.qos,
             "retained": channel.retain, "from": channel.publisher, "to": channel.readers}
            for channel in CHANNELS]
    subscriptions = {"events": topics.EVENTS_SUBSCRIPTION, "status": list(topics.STATUS_SUBSCRIPTIONS),
                     "ticket transitions": topics.TICKET_TRANSITIONS_SUBSCRIPTION}
    if as_json:
        click.echo(json.dumps({"topics": tree, "subscriptions": subscriptions,
                               "id_pattern": topics.ID_PATTERN}, indent=2))
        return
    for entry in tree:
        click.echo(entry["topic"])
        retained = ", retained" if entry["retained"] else ""
        click.echo(f"    payload  {entry['payload']} (QoS {entry['qos']}{retained})")
        click.echo(f"    from     {entry['from']}")
        click.echo(f"    to       {entry['to']}")
    click.echo("subscribe to")
    for name, value in subscriptions.items():
        click.echo(f"    {name:18} {', '.join(value) if isinstance(value, list) else value}")
    click.echo(f"ids (site, node, camera, zone) match {topics.ID_PATTERN}")


# -- Mosquitto security: `init`, `add-*`, `revoke-*` --------------------------------------------------------

_DIR_OPTION = click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="The broker directory made by `gridwatch broker init`.")


def _security() -> ModuleType:
    """The broker-directory module, imported on use: it needs cryptography (the ``broker`` extra)."""
    try:
        from gridwatch.broker.security import directory
    except ImportError as exc:
        raise click.ClickException(f"broker security needs cryptography: install gridwatch[broker] ({exc})") from exc
    return directory


def _checked(kind: str, value: str) -> str:
    try:
        return topics.check_id(kind, value)
    except topics.TopicError as exc:
        raise click.BadParameter(str(exc)) from None


def _report_reload(directory: Path) -> None:
    security = _security()
    pid = security.reload_broker(directory)
    if pid is None:
        conf = security.Layout(directory).conf
        click.echo(f"Mosquitto is not running from {directory}: changes apply when it starts "
                   f"(mosquitto -c {conf}); a broker started otherwise needs a SIGHUP")
    else:
        click.echo(f"reloaded Mosquitto (pid {pid}): it re-read the passwords, ACL and CRL")


@broker.command()
@_DIR_OPTION
@click.option("--hostname", "hostnames", multiple=True, required=True,
              help="A name or IP address clients use to reach the broker (repeat); goes into its certificate.")
@click.option("--tls-port", default=8883, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tls-address", default=None, help="Address of the TLS listener [default: every interface].")
@click.option("--local-port", default=None, type=click.IntRange(1, 65535),
              help="Also listen in plain TCP on 127.0.0.1:PORT (password only) for a server on this host.")
@click.option("--user", "run_as", default="mosquitto", show_default=True,
              help="The user Mosquitto runs as; when run as root, the broker's files are handed to it.")
def init(directory: Path, hostnames: tuple[str, ...], tls_port: int, tls_address: str | None,
         local_port: int | None, run_as: str) -> None:
    """Create a hardened Mosquitto setup: private CA, TLS listener, empty password file and ACL.

    Nobody can connect until principals are added with add-node, add-server and add-integrator.
    """
    security = _security()
    try:
        security.init(directory, hostnames=list(hostnames), tls_port=tls_port, tls_address=tls_address,
                      local_port=local_port, run_as=run_as)
    except security.BrokerDirError as exc:
        raise click.ClickException(str(exc)) from exc
    layout = security.Layout(directory)
    click.echo(f"CA in {layout.ca_key.parent} (keep ca.key offline-safe; it signs every client)")
    click.echo(f"Mosquitto config {layout.conf}: TLS on port {tls_port}"
               + (f", plain on 127.0.0.1:{local_port}" if local_port else ""))
    click.echo(f"start it with: mosquitto -c {layout.conf}")


def _add(directory: Path, kind: str, name: str, site_id: str | None) -> None:
    security = _security()
    from gridwatch.broker.security.principals import Kind

    try:
        credentials = security.add(directory, Kind(kind), name, site_id)
    except security.BrokerDirError as exc:
        raise click.ClickException(str(exc)) from exc
    where = f" of site {site_id}" if site_id else ""
    click.echo(f"issued {kind} {name}{where} as user {credentials.username} (also its client id)")
    click.echo(f"credentials in {credentials.folder}: ca.crt, client.crt, client.key, password (secrets 0600)")
    _report_reload(directory)


def _revoke(directory: Path, kind: str, name: str, site_id: str | None) -> None:
    security = _security()
    from gridwatch.broker.security.principals import Kind, username

    try:
        principal = security.revoke(directory, username(Kind(kind), name, site_id))
    except security.BrokerDirError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {principal.username}: certificate serial {principal.cert_serial:x} on the CRL, "
               "password and ACL entry removed")
    _report_reload(directory)


@broker.command("add-node")
@_DIR_OPTION
@click.option("--site", "site_id", required=True, callback=lambda c, p, v: _checked("site_id", v))
@click.option("--node", "node_id", required=True, callback=lambda c, p, v: _checked("node_id", v))
def add_node(directory: Path, site_id: str, node_id: str) -> None:
    """Issue an edge node a client certificate and password: it may publish only under its own prefix."""
    _add(directory, "node", node_id, site_id)


@broker.command("add-server")
@_DIR_OPTION
@click.option("--name", default="server", show_default=True, callback=lambda c, p, v: _checked("server name", v))
def add_server(directory: Path, name: str) -> None:
    """Issue the GridWatch server credentials: it reads every event and status and writes commands."""
    _add(directory, "server", name, None)


@broker.command("add-integrator")
@_DIR_OPTION
@click.option("--site", "site_id", required=True, callback=lambda c, p, v: _checked("site_id", v))
@click.option("--name", required=True, callback=lambda c, p, v: _checked("integrator name", v))
def add_integrator(directory: Path, site_id: str, name: str) -> None:
    """Issue a third party read-only access to one site's topics."""
    _add(directory, "integrator", name, site_id)


@broker.command("revoke-node")
@_DIR_OPTION
@click.option("--site", "site_id", required=True, callback=lambda c, p, v: _checked("site_id", v))
@click.option("--node", "node_id", required=True, callback=lambda c, p, v: _checked("node_id", v))
def revoke_node(directory: Path, site_id: str, node_id: str) -> None:
    """Lock a node out: certificate on the CRL, password and ACL entry gone, running Mosquitto reloaded."""
    _revoke(directory, "node", node_id, site_id)


@broker.command("revoke-server")
@_DIR_OPTION
@click.option("--name", default="server", show_default=True, callback=lambda c, p, v: _checked("server name", v))
def revoke_server(directory: Path, name: str) -> None:
    """Lock a server identity out, as revoke-node does for a node."""
    _revoke(directory, "server", name, None)


@broker.command("revoke-integrator")
@_DIR_OPTION
@click.option("--site", "site_id", required=True, callback=lambda c, p, v: _checked("site_id", v))
@click.option("--name", required=True, callback=lambda c, p, v: _checked("integrator name", v))
def revoke_integrator(directory: Path, site_id: str, name: str) -> None:
    """Lock an integrator out, as revoke-node does for a node."""
    _revoke(directory, "integrator", name, site_id)
