"""What topics.py cannot say about each topic: direction, QoS, retain flag and payload.

One entry per topic builder in ``topics.py``; a test fails when a builder or a payload model has
no entry here, so a new topic cannot ship undocumented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gridwatch.broker import topics


@dataclass(frozen=True)
class Channel:
    key: str                       # the channel's id in the AsyncAPI document
    builder: Callable[..., str]    # the topics.py function that builds its address
    payload: str                   # its key in contract.PAYLOAD_MODELS (schema broker/schemas/<payload>.v1.json)
    qos: int
    retain: bool
    publisher: str
    readers: str
    summary: str


CHANNELS = (
    Channel("events", topics.events_topic, "event", qos=1, retain=False,
            publisher="edge node", readers="server, integrators of the site",
            summary="One observation of an incident (start, updates, end); event_id is the idempotency key."),
    Channel("nodeStatus", topics.node_status_topic, "node-status", qos=1, retain=True,
            publisher="edge node (the broker publishes its last will, offline)", readers="server, integrators",
            summary="Node availability: online on connect, offline as the MQTT last will."),
    Channel("cameraStatus", topics.camera_status_topic, "camera-status", qos=1, retain=True,
            publisher="edge node", readers="server, integrators",
            summary="Per-camera health, refreshed periodically."),
    Channel("ticketTransitions", topics.ticket_transitions_topic, "ticket-transition", qos=1, retain=False,
            publisher="server", readers="integrators of the site",
            summary="Each lifecycle transition of a grid ticket (网格工单), after it is committed."),
    Channel("nodeCommands", topics.node_commands_topic, "gate-command", qos=1, retain=False,
            publisher="edge node (a rule allowed an entry), server (a guard's order)",
            readers="gate controllers behind the node",
            summary="Open a gate; event_id names the courier_entry event that justified it. A gate command is "
            "valid until expires_at; controllers refuse expired or replayed commands (ack refused, detail "
            "expired / replayed; a command without expires_at counts as expired); commands are never queued "
            "while the sender is disconnected, never retained, and carry an MQTT 5 Message Expiry Interval."),
    Channel("nodeCommandAcks", topics.node_command_ack_topic, "gate-ack", qos=1, retain=False,
            publisher="gate controller", readers="edge node, server",
            summary="A gate controller's answer to a command, echoing its command_id."),
    Channel("cameraConfig", topics.camera_config_topic, "camera-config", qos=1, retain=True,
            publisher="server (a zone config saved in the console)",
            readers="the camera's edge node (it subscribes to {site_id}/{node_id}/+/config); integrators of the site",
            summary="A camera's zones and rules; the node applies a newer version without restarting the stream."),
    Channel("uniformExamples", topics.uniform_examples_topic, "uniform-examples", qos=1, retain=True,
            publisher="server (a supervisor added an event's person crop as an example in the console)",
            readers="every edge node of the site (it subscribes to {site_id}/_uniforms/+/examples); integrators "
            "of the site",
            summary="A uniform's positive and negative examples; a node knowing the uniform fetches the crops "
            "and refits its profile without restarting."),
)
