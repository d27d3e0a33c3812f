"""The edge node: camera frames in, incidents out over MQTT, on a small CPU and often offline.

The folders are the pipeline's stages, and data flows through them in this order only (a stage
imports its own folder and the ones before it, never one after; tests/test_architecture.py checks):

- ``capture/``: sources (files, RTSP, USB) and the per-camera reader threads that sample frames.
- ``perception/``: what is in a frame: detector, tracker, motion gate, tamper check, appearance,
  the lane's background, uniforms.
- ``rules/``: tracked objects in zones become incidents (courier, fire lane, loitering) and gate decisions.
- ``evidence/``: snapshots of an incident, with faces blurred where the rule says so.
- ``delivery/``: the outbox, the MQTT publisher and the gate controller's command/ack.
- ``node/``: the running node that wires the stages per camera: pipeline, scheduler, runner,
  health and metrics, hot reload and remote config, the ``gridwatch edge`` commands.

``config.py`` (the node's YAML config, and the shipped uniform catalogue) is read by every stage.
The edge imports the MQTT contract (``gridwatch.broker``) and the model resolver
(``gridwatch.models``), never ``gridwatch.server``.
"""
