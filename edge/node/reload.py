"""Config hot reload for a live node: zones, rules and masks change without reopening a single stream.

Installers tune polygons and dwell times while the cameras run; restarting the node would reopen
every RTSP session, lose the trackers and cut open incidents. So on a file change (polled mtime)
or SIGHUP the config is loaded again and, if valid, each camera's zones and rules are swapped in
place. A rule whose zone and settings are unchanged keeps its detector (and its open incident);
a changed or removed one is finished first, so its incident ends cleanly, then built anew.

Anything else (cameras, sources, detector, broker, outbox...) needs a restart: such a config, or an
invalid one, is rejected with a message naming why, and the running config stays in force.

Zones also arrive from the console over MQTT (:mod:`gridwatch.edge.node.remote_config`); they go through
the same check and :func:`swap_zones` here. A file change re-applies the file's zones to every
camera, so the file wins again until the console saves a newer version.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from gridwatch.broker.zones import Masks, Zone, detector_classes
from gridwatch.edge.config import Camera, ConfigError, EdgeConfig, Motion, load_config, parse_config
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.edge.node.scheduler import Scheduler

log = logging.getLogger(__name__)

CAMERA_RELOADABLE = {"zones", "privacy_masks"}  # and motion.masks (see _without_motion_masks)


def restart_needed(running: EdgeConfig, new: EdgeConfig) -> list[str]:
    """What differs outside zones and rules, as readable reasons; empty when a hot swap suffices."""
    reasons = [f"{key} changed" for key in type(running).model_fields
               if key != "cameras" and getattr(running, key) != getattr(new, key)]
    old_ids, new_ids = [c.id for c in running.cameras], [c.id for c in new.cameras]
    if old_ids != new_ids:
        return [*reasons, f"cameras changed ({old_ids} -> {new_ids})"]
    for old, cam in zip(running.cameras, new.cameras, strict=True):
        reasons += [f"cameras[{cam.id}].{k} changed" for k in type(old).model_fields
                    if k not in CAMERA_RELOADABLE
                    and _without_motion_masks(getattr(old, k)) != _without_motion_masks(getattr(cam, k))]
        if _objects(old) != _objects(cam):  # the tracker is built for the objects the rules watch
            reasons.append(f"cameras[{cam.id}]: rules watch other objects ({sorted(_objects(cam))})")
    return reasons


def _without_motion_masks(value: object) -> object:
    """A camera setting as compared for a restart: the motion gate takes new masks live, not new thresholds."""
    return value.model_copy(update={"masks": ()}) if isinstance(value, Motion) else value


def _objects(camera: Camera) -> set[str]:
    return {obj for zone in camera.zones for rule in zone.rules for obj in detector_classes(rule)}


def running_config(config: EdgeConfig, pipelines: list[CameraPipeline]) -> EdgeConfig:
    """The node's config as it runs now: each camera as its pipeline holds it (file or console zones)."""
    return config.model_copy(update={"cameras": tuple(pipeline.camera for pipeline in pipelines)})


def with_zones(config: EdgeConfig, camera_id: str, zones: tuple[Zone, ...], masks: Masks) -> EdgeConfig:
    """``config`` with one camera's zones and masks replaced, validated as a whole as a loaded file is (a
    courier rule naming an unknown uniform, say): a ConfigError names the field."""
    data = config.model_dump()
    for camera in data["cameras"]:
        if camera["id"] == camera_id:
            camera["zones"] = [zone.model_dump() for zone in zones]
            camera["privacy_masks"], camera["motion"]["masks"] = masks.privacy, masks.motion
            return parse_config(data)
    raise ConfigError(f"camera_id: no camera {camera_id!r} on this node (cameras: {[c.id for c in config.cameras]})")


def swap_zones(scheduler: Scheduler, pipelines: list[CameraPipeline], index: int, camera: Camera) -> tuple[int, int]:
    """The one way to change a live camera's zones: hold its scheduler slot so no frame is in its
    pipeline, then let the pipeline swap; returns (rules kept, rules rebuilt)."""
    with _SlotHold(scheduler, index):
        return pipelines[index].replace_zones(camera)


class ConfigReloader:
    """Watches the config file (and SIGHUP) and applies valid zone and rule changes to the live pipelines."""

    def __init__(self, path: Path, config: EdgeConfig, pipelines: list[CameraPipeline], scheduler: Scheduler,
                 poll_s: float = 1.0) -> None:
        self.path, self.config, self.pipelines, self.scheduler = path, config, pipelines, scheduler
        self.poll_s = poll_s
        self.requested = threading.Event()
        self.stopping = threading.Event()
        self.mtime = self._mtime()
        self.thread = threading.Thread(target=self._watch, name="config-reload", daemon=True)

    def start(self) -> ConfigReloader:
        signal.signal(signal.SIGHUP, lambda *_: self.requested.set())
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def _watch(self) -> None:
        while not self.stopping.wait(self.poll_s):
            mtime = self._mtime()
            if mtime != self.mtime or self.requested.is_set():
                self.mtime = mtime
                self.requested.clear()
                self.reload()

    def reload(self) -> bool:
        """Load, check and apply; False (and a log line saying why) when the running config stays."""
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            log.error("config reload rejected, the running config stays: %s", str(exc).replace("\n", "; "))
            return False
        if reasons := restart_needed(self.config, new):
            log.error("config reload rejected, needs a restart: %s", "; ".join(reasons))
            return False
        summary = []
        for index, camera in enumerate(new.cameras):
            kept, rebuilt = swap_zones(self.scheduler, self.pipelines, index, camera)
            summary.append(f"{camera.id}: {len(camera.zones)} zones, {kept} rules kept, {rebuilt} rebuilt")
        self.config = new
        log.info("config reloaded without restarting streams: %s", "; ".join(summary))
        return True


class _SlotHold:
    """Take a camera's scheduler slot as a worker does (busy), so no frame of it is processed meanwhile."""

    def __init__(self, scheduler: Scheduler, index: int) -> None:
        self.scheduler, self.index = scheduler, index

    def __enter__(self) -> None:
        with self.scheduler.cond:
            slot = self.scheduler.slots[self.index]
            while slot.busy:
                self.scheduler.cond.wait(0.1)
            slot.busy = True

    def __exit__(self, *exc: object) -> None:
        with self.scheduler.cond:
            self.scheduler.slots[self.index].busy = False
            self.scheduler.cond.notify_all()
