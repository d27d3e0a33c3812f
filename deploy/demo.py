"""``gridwatch demo``: the whole pipe on one machine, in one process.

An embedded MQTT broker (or ``--mqtt-url``), the server on SQLite in a data directory, and an edge
node looping over the shared sample clip in real time. Real tickets appear on the console within
a minute, because the first person reaches the table a few seconds into the clip.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from pathlib import Path

import click

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


def _api(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> dict:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def prepare_site(api_url: str) -> None:
    """Load the sample grid registry and let daytime loitering register, through the public API.

    The shipped category table registers loitering only at night (22:00-06:00); a demo watched by
    day would only show voided tickets, so the demo's own version drops the hours condition.
    """
    from gridwatch.server.registry import SAMPLE_PATH

    _api("PUT", f"{api_url}/api/registry", SAMPLE_PATH.read_bytes(), "application/yaml")
    table = _api("GET", f"{api_url}/api/categories")["table"]
    for category in table["categories"]:
        if category["event_type"] == "loitering":
            category["registration"]["hours"] = None
    _api("PUT", f"{api_url}/api/categories?author=demo", json.dumps(table).encode())


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
    from gridwatch.edge.runner import LiveNode, evidence_store, mqtt_publisher
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
    prepare_site(console_url.rstrip("/"))

    config = load_config(DEMO_CONFIG)
    config = config.model_copy(update={
        "mqtt": config.mqtt.model_copy(update={"url": mqtt_url}),
        "server": config.server.model_copy(update={"url": console_url.rstrip("/")}),
        "cameras": tuple(c.model_copy(update={"source": str(clip)}) for c in config.cameras),
        "evidence": config.evidence.model_copy(update={"dir": str(data_dir / "evidence")}),
    })
    publisher = mqtt_publisher(config)
    node = LiveNode(config, evidence_store(config), publisher)
    node.start()

    click.echo(f"GridWatch demo running. Broker: {mqtt_url}  Data: {data_dir}")
    click.echo(f"Console: {console_url}   (Ctrl-C to stop)")
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
