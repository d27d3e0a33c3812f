"""``gridwatch edge``: run a node live, or replay a clip to try a zone config before deployment."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from pathlib import Path

import click

from gridwatch.edge.config import ConfigError, load_config


def _load(config_path: Path):
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid config {config_path}:\n{exc}") from None


@click.group()
def edge() -> None:
    """Edge node: capture, detect, track, rules, evidence, publish."""


@edge.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
def run(config_path: Path) -> None:
    """Run every camera of the config live and publish events over MQTT until stopped."""
    from gridwatch.edge.node.metrics import serve_node_metrics
    from gridwatch.edge.node.reload import ConfigReloader
    from gridwatch.edge.node.runner import LiveNode, evidence_store, mqtt_publisher

    config = _load(config_path)
    publisher = mqtt_publisher(config, config_path.parent)
    try:
        node = LiveNode(config, evidence_store(config, config_path.parent), publisher)
    except ConfigError as exc:
        publisher.close()
        raise click.ClickException(f"invalid config {config_path}:\n{exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: node.stopping.set())
    node.start()
    metrics = serve_node_metrics(config.metrics.host, config.metrics.port, publisher, node.health)
    reloader = ConfigReloader(config_path, config, node.engine.pipelines, node.engine.scheduler).start()
    try:
        node.wait()
    except KeyboardInterrupt:
        pass
    finally:
        reloader.stop()
        if metrics is not None:
            metrics.close()
        node.stop()
        publisher.close()


@edge.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--source", help="Video file to replay instead of the camera's configured source.")
@click.option("--camera", "camera_id", help="Which camera's zones and rules to use (default: the first).")
@click.option("--events-out", type=click.Path(path_type=Path), help="Write every event as JSON lines here.")
@click.option("--publish", is_flag=True, help="Also publish the events to the config's MQTT broker.")
@click.option("--start-time", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]),
              help="Wall-clock time of the clip's first frame (default: now).")
@click.option("--drain-s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="With --publish: how long to wait at the end for the broker to acknowledge stored events "
                   "(what is left stays in the outbox for the next start).")
def replay(config_path: Path, source: str | None, camera_id: str | None, events_out: Path | None,
           publish: bool, start_time: datetime | None, drain_s: float) -> None:
    """Process a recorded clip on its own clock, as fast as possible, and list the events it causes."""
    from tqdm import tqdm

    from gridwatch.edge.capture.source import SourceError
    from gridwatch.edge.config import resolve_source
    from gridwatch.edge.delivery.publish import EventSink, JsonLinesSink
    from gridwatch.edge.node import runner
    from gridwatch.models.resolver import ChecksumMismatch, ModelNotFound

    config = _load(config_path)
    cameras = {c.id: c for c in config.cameras}
    if camera_id is not None and camera_id not in cameras:
        raise click.ClickException(f"--camera {camera_id!r}: the config has cameras {sorted(cameras)}")
    camera = cameras[camera_id] if camera_id else config.cameras[0]
    if source:
        camera = camera.model_copy(update={"source": resolve_source(source, Path.cwd())})

    sinks: list[EventSink] = []
    if events_out:
        sinks.append(JsonLinesSink(events_out.open("w", encoding="utf-8")))
    publisher = runner.mqtt_publisher(config, config_path.parent) if publish else None
    if publisher is not None:
        sinks.append(publisher)
    bar = tqdm(total=None, unit="s", disable=not sys.stderr.isatty(), desc=f"replay {camera.id}",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")

    def progress(done_s: float, total_s: float) -> None:
        bar.total = total_s or None
        bar.n = done_s
        bar.refresh()

    try:
        pipeline = runner.replay(config, camera, sinks, runner.evidence_store(config, config_path.parent),
                                 clock_origin=start_time, on_progress=progress)
    except (SourceError, ModelNotFound, ChecksumMismatch, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
        for sink in sinks:
            if sink is publisher:
                publisher.close(drain_s)
            else:
                sink.close()
    starts = sum(1 for e in pipeline.events if e.phase.value == "start")
    click.echo(f"{camera.id}: {pipeline.frames_detected} frames detected, {len(pipeline.events)} events "
               f"({starts} incidents)" + (f" -> {events_out}" if events_out else ""), err=True)


@edge.command("original")
@click.argument("sha256")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--actor", required=True, help="Who asked for the original (written to the access log).")
@click.option("--purpose", required=True, help="Why, e.g. the police request's reference (written to the log).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Where to write the JPEG.")
def original(sha256: str, config_path: Path, actor: str, purpose: str, out_path: Path) -> None:
    """Decrypt the unblurred original of snapshot SHA256 kept on this node, after logging the access.

    The access goes to the server's evidence access log first (the node's API token needs scope
    evidence:log); if the server does not confirm it, nothing is decrypted."""
    import os
    import urllib.error

    from gridwatch.edge.delivery.publish import log_original_access
    from gridwatch.edge.evidence.originals import OriginalNotFound
    from gridwatch.edge.node.runner import originals_vault

    config = _load(config_path)
    vault = originals_vault(config, config_path.parent)
    if vault is None:
        raise click.ClickException("this node keeps no originals (evidence.originals.enabled is false)")
    if not vault.path_of(sha256).is_file():
        raise click.ClickException(f"no original is kept for snapshot {sha256}")
    if not config.server.url:
        raise click.ClickException("no server.url: the access cannot be logged, so the original stays sealed")
    try:
        log_original_access(config.server.url, sha256, actor, purpose, config.server.token)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise click.ClickException(f"the access was not logged ({exc}); the original stays sealed") from None
    try:
        data = vault.reveal(sha256)
    except OriginalNotFound:
        raise click.ClickException(f"no original is kept for snapshot {sha256}") from None
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    click.echo(f"original of {sha256} written to {out_path} (access logged for {actor})")


def _region(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter("--box: four numbers x1,y1,x2,y2 (normalised 0..1)") from None
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise click.BadParameter("--box: x1 < x2 and y1 < y2, all within 0..1")
    return x1, y1, x2, y2


@edge.command("enroll-uniform")
@click.option("--id", "uniform_id", required=True, help="The uniform's id, e.g. meituan or site-guard.")
@click.option("--images", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A folder of photos of a person wearing the uniform (the largest person in each is used).")
@click.option("--clip", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A clip showing the uniform, with --start/--end and --box.")
@click.option("--start", "start_s", type=float, default=0.0, show_default=True, help="Clip range start (seconds).")
@click.option("--end", "end_s", type=float, help="Clip range end (seconds; default: the end).")
@click.option("--box", help="Where the uniformed person is in the clip: x1,y1,x2,y2 normalised (box centre inside).")
@click.option("--negatives", "negatives", type=click.Path(path_type=Path, exists=True), multiple=True, required=True,
              help="Footage of the site's ordinary people (a folder of frames or a clip; repeatable).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Profile file to write (default: <id>.profile.json); the config's `profile:` names it.")
@click.option("--max-false-accept", type=click.FloatRange(0, 0.2), default=0.01, show_default=True,
              help="False-accept target the threshold is calibrated for, on held-out site negatives.")
@click.option("--name-en", help="Display name in English (default: the id).")
@click.option("--name-zh", help="Display name in Chinese (zh-CN).")
def enroll_uniform(uniform_id: str, images: Path | None, clip: Path | None, start_s: float, end_s: float | None,
                   box: str | None, negatives: tuple[Path, ...], out: Path | None, max_false_accept: float,
                   name_en: str | None, name_zh: str | None) -> None:
    """Learn a uniform profile against the site's own people; print its cross-validated separation
    and the config entry for `uniforms:`."""
    import yaml

    from gridwatch.edge.capture.source import SourceError
    from gridwatch.edge.config import EdgeConfig, Uniform
    from gridwatch.edge.node import runner
    from gridwatch.edge.perception.appearance import AppearanceEmbedder
    from gridwatch.edge.perception.enrol import clip_people, footage_people, photo_people, train

    if (images is None) == (clip is None):
        raise click.UsageError("give --images DIR or --clip FILE (with --start/--end/--box)")
    names = {"en": name_en or uniform_id, **({"zh-CN": name_zh} if name_zh else {})}
    out = out or Path(f"{uniform_id}.profile.json")
    detector = runner.build_detector(EdgeConfig.model_validate(
        {"site_id": "enrol", "node_id": "enrol", "cameras": [{"id": "enrol", "source": "unused"}]}))
    embedder = AppearanceEmbedder()
    try:
        positives = (photo_people(images, detector, embedder, largest_only=True) if images is not None else
                     clip_people(clip, detector, embedder, start_s, end_s, _region(box)))
        site = [person for path in negatives for person in footage_people(path, detector, embedder)]
        profile, separation = train(uniform_id, positives, site, max_false_accept)
    except (ValueError, SourceError) as exc:
        raise click.ClickException(str(exc)) from None
    profile.save(out)
    click.echo(f"{uniform_id}: threshold {profile.threshold} for a {max_false_accept:.1%} false-accept target; "
               f"{separation.line()} -> {out}", err=True)
    entry = Uniform(id=uniform_id, name=names, profile=str(out)).model_dump(mode="json", exclude_defaults=True)
    click.echo(yaml.safe_dump({"uniforms": [{"id": uniform_id, **entry}]}, allow_unicode=True, sort_keys=False))
