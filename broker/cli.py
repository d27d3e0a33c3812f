"""``gridwatch broker``: run the embedded broker, keep the JSON Schemas in step, show the topic tree.

Only click, the standard library and gridwatch.broker are imported here; amqtt (the ``broker``
extra) is loaded only when ``run`` starts a broker, so ``gridwatch`` works on boxes that never host one.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

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


@broker.command("topics")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def topics_command(as_json: bool) -> None:
    """Print the MQTT topic tree, what each topic carries and what to subscribe to."""
    ids = ("site-1", "node-1", "cam-1")  # examples built by the real builders, so they stay valid
    tree = [
        {"topic": f"{topics.PREFIX}/<site_id>/<node_id>/status",
         "example": topics.node_status_topic(*ids[:2]),
         "payload": "node-status.v1.json", "delivery": "retained; also the node's last will"},
        {"topic": f"{topics.PREFIX}/<site_id>/<node_id>/<camera_id>/status",
         "example": topics.camera_status_topic(*ids),
         "payload": "camera-status.v1.json", "delivery": "retained, refreshed periodically"},
        {"topic": f"{topics.PREFIX}/<site_id>/<node_id>/<camera_id>/events",
         "example": topics.events_topic(*ids),
         "payload": "event.v1.json", "delivery": "QoS 1, not retained"},
    ]
    subscriptions = {"events": topics.EVENTS_SUBSCRIPTION, "status": list(topics.STATUS_SUBSCRIPTIONS)}
    if as_json:
        click.echo(json.dumps({"topics": tree, "subscriptions": subscriptions,
                               "id_pattern": topics.ID_PATTERN}, indent=2))
        return
    for entry in tree:
        click.echo(entry["topic"])
        click.echo(f"    payload  {entry['payload']} ({entry['delivery']})")
        click.echo(f"    e.g.     {entry['example']}")
    click.echo("subscribe to")
    click.echo(f"    events   {subscriptions['events']}")
    click.echo(f"    status   {', '.join(subscriptions['status'])}")
    click.echo(f"ids (site, node, camera, zone) match {topics.ID_PATTERN}")
