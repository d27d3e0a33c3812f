"""Zones and masks pushed from the console: the node subscribes to its cameras' config topic and hot-swaps them.

The server publishes a ``CameraConfig`` retained on ``gridwatch/v1/<site>/<node>/<camera>/config``
whenever an installer saves a camera's zones, so a node gets the newest one on every (re)subscribe,
including right after it starts. A config is applied only when its ``version`` is newer than the one
this process applied last for that camera; it goes through the same check and swap as a file reload
(:mod:`gridwatch.edge.node.reload`), so the stream is never reopened and unchanged rules keep their state.
A payload that is not a valid config, names another node or an unknown camera, or would need a
restart is logged with the field and ignored: the zones running stay.

The subscription and its worker thread are :class:`~gridwatch.edge.node.subscription.NodeSubscription`'s.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as paho
from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraConfig
from gridwatch.edge.config import ConfigError, EdgeConfig, readable_errors
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.edge.node.reload import restart_needed, running_config, swap_zones, with_zones
from gridwatch.edge.node.scheduler import Scheduler
from gridwatch.edge.node.subscription import NodeSubscription

log = logging.getLogger(__name__)

class RemoteZones(NodeSubscription):
    """Applies console-pushed camera configs to a live node's pipelines."""

    def __init__(self, client: paho.Client, config: EdgeConfig, pipelines: list[CameraPipeline],
                 scheduler: Scheduler) -> None:
        super().__init__(client, topics.node_configs_filter(config.site_id, config.node_id), what="camera config",
                         stop_timeout_s=5.0)
        self.config, self.pipelines, self.scheduler = config, pipelines, scheduler
        self.applied: dict[str, int] = {}  # camera id -> version applied by this process

    def apply(self, topic: str, payload: bytes) -> bool:
        """Apply one config message; False (and a log line naming why) when the running zones stay."""
        try:
            where = topics.parse_camera_config_topic(topic)
            config = CameraConfig.model_validate_json(payload)
        except topics.TopicError as exc:
            log.error("camera config ignored: %s", exc)
            return False
        except ValidationError as exc:
            log.error("camera config on %s ignored, the running zones stay: %s", topic,
                      readable_errors(exc).replace("\n", "; "))
            return False
        mine = (self.config.site_id, self.config.node_id, where.camera_id)
        if (config.site_id, config.node_id, config.camera_id) != mine or (where.site_id, where.node_id) != mine[:2]:
            log.error("camera config on %s ignored: it is for %s/%s/%s", topic, config.site_id, config.node_id,
                      config.camera_id)
            return False
        if config.version <= self.applied.get(config.camera_id, 0):
            log.debug("camera config %s v%d ignored: v%d applied", config.camera_id, config.version,
                      self.applied[config.camera_id])
            return False
        running = running_config(self.config, self.pipelines)
        try:
            new = with_zones(running, config.camera_id, config.zones, config.masks)
        except ConfigError as exc:
            log.error("camera config %s v%d ignored, the running zones stay: %s", config.camera_id, config.version,
                      str(exc).replace("\n", "; "))
            return False
        if reasons := restart_needed(running, new):
            log.error("camera config %s v%d ignored, it needs a restart: %s", config.camera_id, config.version,
                      "; ".join(reasons))
            return False
        index = [camera.id for camera in new.cameras].index(config.camera_id)
        kept, rebuilt = swap_zones(self.scheduler, self.pipelines, index, new.cameras[index])
        self.applied[config.camera_id] = config.version
        log.info("camera config %s v%d from the console applied without restarting the stream: %d zones, "
                 "%d rules kept, %d rebuilt, %d privacy and %d motion masks", config.camera_id, config.version,
                 len(config.zones), kept, rebuilt, len(config.masks.privacy), len(config.masks.motion))
        return True
