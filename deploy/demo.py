"""``gridwatch demo``: the whole pipe on one machine, in one process.

An embedded MQTT broker (or ``--mqtt-url``), the server on SQLite in a data directory, and an edge
node looping over the shared sample clip in real time. Real tickets appear on the console within
a minute, because the first person reaches the table a few seconds into the clip. One demo account
per role is created (if missing) and printed, so the console can be tried from every seat.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from gridwatch.server.runner import ServerRunner

DEMO_CONFIG = Path(__file__).parent / "demo" / "demo-edge.yaml"
REPO_ROOT = Path(__file__).resolve().parents[1]


def find_sample(name: str) -> Path:
    """The shared sample clip: ``$GRIDWATCH_SAMPLES``, else ``../shared/samples`` beside the checkout or cwd."""
    candidates = []
    if env := os.environ.get("GRIDWATCH_SAMPLES"):
        candidates.append(Path(env) / name)
    candidates += [base.parent / "shared" / "samples" / name for base in (REPO_ROOT, Path.cwd())]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    looked = "\n".join(f"  - {p}" for p in candidates)
    raise click.ClickException(f"sample clip {name} not found; looked in:\n{looked}\n"
                               "Set GRIDWATCH_SAMPLES to the folder that holds it, or pass --source.")


DEMO_PASSWORD = "gridwatch-demo"
# (username, role, registry person id, name, department): one seat of each kind in the sample registry.
DEMO_ACCOUNTS = (
    ("admin", "admin", "admin", "管理员", None),
    ("chen", "supervisor", "p-chen", "陈主任", None),
    ("guard", "security", "p-sec-1", "郑浩", None),
    ("li", "grid_worker", "p-li", "李娜", None),
    ("sun", "grid_worker", "p-sun", "孙磊", None),
    ("fire", "department", "p-fire-1", "周勇", "dept-fire-safety"),
)


class _AdminApi:
    """The public REST API as the demo's admin: one login, the session cookie and CSRF token after."""

    def __init__(self, api_url: str) -> None:
        self.url = api_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        me = self("POST", "/api/auth/login", json.dumps({"username": "admin", "password": DEMO_PASSWORD}).encode())
        self.csrf = me["csrf_token"]

    def __call__(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json") -> dict:
        headers = {"Content-Type": content_type, "X-CSRF-Token": getattr(self, "csrf", "")}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        with self.opener.open(request, timeout=10) as response:
            return json.loads(response.read())


def create_demo_accounts(runner: ServerRunner) -> None:
    """One account per role (password ``DEMO_PASSWORD``), kept if they already exist."""
    import sqlalchemy as sa

    from gridwatch.server.models import Account
    from gridwatch.server.registry.accounts import create_account

    state = runner.app.state
    with state.sessions() as session:
        for username, role, person_id, name, unit in DEMO_ACCOUNTS:
            if session.scalar(sa.select(Account.id).where(Account.username == username)) is None:
                create_account(session, username=username, password=DEMO_PASSWORD, role=role, person_id=person_id,
                               display_name=name, unit=unit, now=state.clock.now())
        session.commit()


def prepare_site(api_url: str) -> None:
    """Load the sample grid registry and let daytime loitering register, through the public API.

    The shipped category table registers loitering only at night (22:00-06:00); a demo watched by
    day would only show voided tickets, so the demo's own version drops the hours condition.
    """
    from gridwatch.server.registry.grids import SAMPLE_PATH

    api = _AdminApi(api_url)
    api("PUT", "/api/registry", SAMPLE_PATH.read_bytes(), "application/yaml")
    table = api("GET", "/api/categories")["table"]
    for category in table["categories"]:
        if category["event_type"] == "loitering":
            category["registration"]["hours"] = None
    api("PUT", "/api/categories", json.dumps(table).encode())


@click.command()
@click.option("--mqtt-url", help="Use this broker instead of starting the embedded one.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("gridwatch-data"), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, help="Console and API port.")
@click.option("--source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Clip to loop (default: the shared one-by-one-person-detection.mp4).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: run until Ctrl-C).")
def demo(mqtt_url: str | None, data_dir: Path, host: str, port: int, source: Path | None,
         duration: float | None) -> None:
    """Broker + server (SQLite) + an edge node on a sample clip; prints the console URL."""
    from gridwatch.broker.embedded import EmbeddedBroker
    from gridwatch.edge.config import load_config
    from gridwatch.edge.node.runner import LiveNode, evidence_store, mqtt_publisher
    from gridwatch.server.runner import ServerRunner
    from gridwatch.server.settings import ServerSettings

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    clip = source.resolve() if source else find_sample("one-by-one-person-detection.mp4")

    broker = None
    if mqtt_url is None:
        broker = EmbeddedBroker(port=0).start()
        mqtt_url = broker.url
    console_url = f"http://{host}:{port}/"
    server = ServerRunner(ServerSettings(data_dir=data_dir, mqtt_url=mqtt_url, host=host, port=port,
                                         mqtt_client_id="gridwatch-demo-server"))
    server.start()
    create_demo_accounts(server)
    prepare_site(console_url.rstrip("/"))

    config = load_config(DEMO_CONFIG)
    config = config.model_copy(update={
        "mqtt": config.mqtt.model_copy(update={"url": mqtt_url}),
        "server": config.server.model_copy(update={"url": console_url.rstrip("/")}),
        "cameras": tuple(c.model_copy(update={"source": str(clip)}) for c in config.cameras),
        "evidence": config.evidence.model_copy(update={"dir": str(data_dir / "evidence")}),
    })
    publisher = mqtt_publisher(config, base_dir=data_dir)  # the outbox lives in the data directory
    node = LiveNode(config, evidence_store(config), publisher)
    node.start()

    click.echo(f"GridWatch demo running. Broker: {mqtt_url}  Data: {data_dir}")
    click.echo(f"Console: {console_url}   (Ctrl-C to stop)")
    click.echo(f"Demo accounts (password {DEMO_PASSWORD}):")
    for username, role, person_id, name, _unit in DEMO_ACCOUNTS:
        click.echo(f"  {username:<6} {role:<12} {person_id:<9} {name}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
        publisher.close()
        server.stop()
        if broker:
            broker.stop()
