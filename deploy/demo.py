"""``gridwatch demo``: the whole pipe on one machine, in one process.

An embedded MQTT broker (or ``--mqtt-url``), the server on SQLite in a data directory, a reference
gate controller, and an edge node looping four cameras over the shared sample clips in real time
(deploy/demo_footage.py): people lingering at the lobby table, a courier in a hi-vis vest at the
north gate (the gate opens for him), a car held in the east fire lane, passing traffic in the west
one. All three kinds of ticket appear on the console within two minutes. One demo account per role
is created (if missing) and printed, so the console can be tried from every seat.
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
    from gridwatch.deploy.demo_footage import Footage
    from gridwatch.edge.config import EdgeConfig
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


# The demo's short clocks: a fire-lane ticket is registered as soon as the edge reports the car (the
# edge's own min_stationary_s is already the demo's 10 s; no group wait) and escalates after a minute
# undispatched, so a first look sees the whole life of one; the shipped table waits minutes.
DEMO_FIRE_LANE_LIMITS = {"registered": {"limit": 1, "type": "urgent_minutes"},
                         "dispatched": {"limit": 2, "type": "urgent_minutes"}}


def prepare_site(api_url: str) -> None:
    """Load the sample grid registry and the demo's category table, through the public API.

    The shipped category table registers loitering only at night (22:00-06:00); a demo watched by
    day would only show voided tickets, so the demo's own version drops the hours condition. It
    also gives the fire lanes the demo's short clocks (``DEMO_FIRE_LANE_LIMITS``).
    """
    from gridwatch.server.registry.grids import SAMPLE_PATH

    api = _AdminApi(api_url)
    api("PUT", "/api/registry", SAMPLE_PATH.read_bytes(), "application/yaml")
    table = api("GET", "/api/categories")["table"]
    for category in table["categories"]:
        if category["event_type"] == "loitering":
            category["registration"]["hours"] = None
        if category["event_type"] in ("fire_lane_blocked", "fire_lane_obstructed"):
            category["registration"]["min_duration_s"] = 0
            category["group_wait_s"] = 0
            category["time_limits"].update(DEMO_FIRE_LANE_LIMITS)
    api("PUT", "/api/categories", json.dumps(table).encode())


def serve_footage_credits(server: ServerRunner, footage: list[Footage]) -> None:
    """``GET /api/demo/footage``: which sample clip each camera plays, for the console's credit line
    (the licence asks for it). Only the demo's server has it; elsewhere the console shows nothing."""
    credits = [f.credit() for f in footage]
    server.app.add_api_route("/api/demo/footage", lambda: credits, methods=["GET"], include_in_schema=False)


def edge_config(footage: list[Footage], profile: Path, mqtt_url: str, server_url: str, data_dir: Path) -> EdgeConfig:
    """The demo node's config: demo-edge.yaml with each camera's clip, the vest profile and the URLs."""
    import yaml

    from gridwatch.edge.config import parse_config

    data = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    clips = {f.camera_id: str(f.path) for f in footage}
    for camera in data["cameras"]:
        camera["source"] = clips[camera["id"]]
    data["mqtt"] = {"url": mqtt_url}
    data["server"] = {"url": server_url}
    data["evidence"] = {"dir": str(data_dir / "evidence")}
    return parse_config(data, base_dir=profile.parent)  # the profile's relative path is beside it


@click.command()
@click.option("--mqtt-url", help="Use this broker instead of starting the embedded one.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("gridwatch-data"), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, help="Console and API port.")
@click.option("--source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Clip for the lobby camera (default: the shared one-by-one-person-detection.mp4).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: run until Ctrl-C).")
def demo(mqtt_url: str | None, data_dir: Path, host: str, port: int, source: Path | None,
         duration: float | None) -> None:
    """Broker + server (SQLite) + gate controller + an edge node on the sample clips; prints the console URL."""
    from gridwatch.broker.embedded import EmbeddedBroker
    from gridwatch.deploy.demo_footage import CREDIT, LOBBY_CLIP, prepare_footage
    from gridwatch.deploy.gate_controller import GateControllerClient, GateDecider
    from gridwatch.edge.node.runner import LiveNode, evidence_store, mqtt_publisher
    from gridwatch.server.runner import ServerRunner
    from gridwatch.server.settings import ServerSettings

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    samples = find_sample(LOBBY_CLIP).parent
    footage, profile = prepare_footage(samples, data_dir, source.resolve() if source else None)

    broker = None
    if mqtt_url is None:
        broker = EmbeddedBroker(port=0).start()
        mqtt_url = broker.url
    console_url = f"http://{host}:{port}/"
    server = ServerRunner(ServerSettings(data_dir=data_dir, mqtt_url=mqtt_url, host=host, port=port,
                                         mqtt_client_id="gridwatch-demo-server"))
    serve_footage_credits(server, footage)
    server.start()
    create_demo_accounts(server)
    prepare_site(console_url.rstrip("/"))

    config = edge_config(footage, profile, mqtt_url, console_url.rstrip("/"), data_dir)
    gate_controller = GateControllerClient(mqtt_url, config.site_id, config.node_id, GateDecider())
    gate_controller.start()
    publisher = mqtt_publisher(config, base_dir=data_dir)  # the outbox lives in the data directory
    node = LiveNode(config, evidence_store(config), publisher)
    node.start()

    click.echo(f"GridWatch demo running. Broker: {mqtt_url}  Data: {data_dir}")
    click.echo(f"Console: {console_url}   (Ctrl-C to stop)")
    click.echo(f"Cameras (footage: {CREDIT}):")
    for f in footage:
        click.echo(f"  {f.camera_id:<15} {f.clip}" + (f" ({f.changed()})" if f.change else ""))
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
        gate_controller.close()
        server.stop()
        if broker:
            broker.stop()
