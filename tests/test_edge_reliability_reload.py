"""Config hot reload on a real `gridwatch edge run`: zones and rules change while the stream keeps
running; an invalid config, or one that needs a restart, is rejected and the old one stays.

Also checks the live node's /metrics endpoint, since this is the test that runs a live node.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import REPO, Mosquitto, free_port
from tests.reliability_helpers import CLIP, edge_config, wait_for


def frames_in(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return float(next(line for line in text.splitlines()
                      if line.startswith('gridwatch_edge_frames_in_total{camera="cam-1"}')).split()[-1])


def test_zones_reload_live_and_bad_configs_are_rejected(tmp_path: Path, samples: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    path = edge_config(tmp_path, mosquitto.url, None, metrics={"port": port})
    config = yaml.safe_load(path.read_text())
    config["cameras"][0].update(source=str(samples / CLIP), loop=True)
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "edge.log"

    def logged(text: str, timeout: float = 15) -> bool:
        return wait_for(log.read_text, lambda out: text in out, timeout) is not None and text in log.read_text()

    def rewrite(change) -> None:
        data = yaml.safe_load(path.read_text())
        change(data["cameras"][0])
        path.write_text(yaml.safe_dump(data))

    with log.open("w") as out:
        edge = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "edge", "run", "--config", str(path)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        assert logged("camera cam-1: connected to", 30), log.read_text()
        assert wait_for(lambda: frames_in(port), lambda n: n > 0, 10)

        rewrite(lambda cam: cam["zones"][0]["rules"][0].update(min_dwell_s=20))
        assert logged("config reloaded without restarting streams: cam-1: 1 zones, 0 rules kept, 1 rebuilt")

        rewrite(lambda cam: cam["zones"][0].update(polygon=[[0.1, 0.1], [0.2, 0.2]]))
        assert logged("config reload rejected, the running config stays: "
                      "cameras[0].zones[0].polygon: a polygon needs at least 3 points")

        rewrite(lambda cam: cam["zones"][0].update(polygon=[[0.4, 0.6], [0.8, 0.6], [0.8, 1.0]]) or
                cam.update(detect_fps=2))
        assert logged("config reload rejected, needs a restart: cameras[cam-1].detect_fps changed")

        rewrite(lambda cam: cam.update(detect_fps=5) or cam["zones"].append(
            {"id": "door", "polygon": [[0, 0], [0.3, 0], [0.3, 0.5]],
             "rules": [{"type": "loitering", "min_dwell_s": 30}]}))
        assert logged("cam-1: 2 zones, 0 rules kept, 2 rebuilt")  # the table's polygon changed too

        edge.send_signal(signal.SIGHUP)  # same file: a reload that keeps every rule and its state
        assert logged("cam-1: 2 zones, 2 rules kept, 0 rebuilt")

        before = frames_in(port)
        assert wait_for(lambda: frames_in(port), lambda n: n > before, 10) > before  # still running
        assert edge.poll() is None
    finally:
        edge.send_signal(signal.SIGTERM)
        edge.wait(30)
    output = log.read_text()
    assert output.count("camera cam-1: connected to") == 1, output  # the stream was never reopened
    print("reload: 3 applied (file change x2, SIGHUP), 2 rejected (invalid polygon, detect_fps needs a restart)")


def replay_with_swap(samples: Path, tmp_path: Path, at_s: float, change) -> list[tuple[str, float]]:
    """The clip through one pipeline, its zones swapped for ``change(camera)`` at ``at_s``; (phase, time) of events."""
    from datetime import UTC, datetime

    from gridwatch.edge.capture.source import FrameSource, Sampler
    from gridwatch.edge.config import load_config
    from gridwatch.edge.evidence.snapshots import EvidenceStore
    from gridwatch.edge.node.pipeline import CameraPipeline
    from gridwatch.edge.node.runner import build_detector

    config = load_config(REPO / "tests" / "data" / "table-zone.yaml")
    camera = config.cameras[0].model_copy(update={"source": str(samples / CLIP)})
    pipeline = CameraPipeline(config.site_id, config.node_id, camera, build_detector(config),
                              EvidenceStore(tmp_path / "evidence"), [], datetime(2024, 1, 1, tzinfo=UTC))
    source, swapped = FrameSource(camera.source), False
    try:
        for frame in source.frames(Sampler(camera.detect_fps)):
            if not swapped and frame.source_time_s >= at_s:
                pipeline.replace_zones(change(camera))
                swapped = True
            pipeline.process(frame)
        pipeline.finish()
    finally:
        source.close()
    return [(e.phase.value, round((e.observed_at - pipeline.clock_origin).total_seconds(), 1))
            for e in pipeline.events]


def test_swap_keeps_unchanged_rules_and_ends_replaced_ones(samples: Path, tmp_path: Path) -> None:
    """Mid-incident (the first starts at 38.4 s): an identical config changes nothing; a stricter rule
    ends the open incident at the swap and raises no further ones."""
    baseline = replay_with_swap(samples, tmp_path / "a", 1e9, lambda cam: cam)
    same = replay_with_swap(samples, tmp_path / "b", 40.0, lambda cam: cam)
    stricter = replay_with_swap(samples, tmp_path / "c", 40.0, lambda cam: cam.model_copy(update={"zones": (
        cam.zones[0].model_copy(update={"rules": (cam.zones[0].rules[0].model_copy(update={"min_dwell_s": 1000}),)}),
    )}))
    print(f"swap at 40 s: baseline {baseline}; identical {same}; stricter {stricter}")
    assert len(baseline) >= 5 and baseline[0][0] == "start" and baseline[0][1] < 40.0
    assert same == baseline
    assert [phase for phase, _ in stricter] == ["start", "end"] and stricter[1][1] < 41.0
