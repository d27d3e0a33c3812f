"""The versioned MQTT topic tree.

Every topic GridWatch uses is built and parsed here, so edge, server and integrators agree on one
layout and no code formats topic strings by hand::

    gridwatch/v1/<site>/<node>/status                 node availability (retained, last will)
    gridwatch/v1/<site>/<node>/<camera>/status        camera health (retained)
    gridwatch/v1/<site>/<node>/<camera>/events        events (QoS 1)
    gridwatch/v1/<site>/<node>/commands               commands to the node's devices, e.g. open a gate (QoS 1)
    gridwatch/v1/<site>/<node>/commands/ack           a device's acknowledgement of a command (QoS 1)
    gridwatch/v1/<site>/<node>/<camera>/config        a camera's zones from the console, server → node (retained)
    gridwatch/v1/<site>/_tickets/<ticket>/transitions ticket lifecycle, server → integrators (QoS 1)
    gridwatch/v1/<site>/_uniforms/<uniform>/examples  a uniform's examples from the console, server → nodes (retained)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import StringConstraints

ROOT = "gridwatch"
VERSION = "v1"
PREFIX = f"{ROOT}/{VERSION}"

# Ids become topic segments: '+', '#' and '/' inside one would let a client escape a pattern ACL
# (CVE-2017-7650), so ids are restricted to a safe alphabet before they ever reach a topic.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
# The same rule as a pydantic type, for payload and config models. It lives here, not in contract.py,
# because the contract validates camera configs with the edge's Zone model and edge/config.py needs
# Id too: defining it in contract.py would make the two modules import each other.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

EVENTS_SUBSCRIPTION = f"{PREFIX}/+/+/+/events"
STATUS_SUBSCRIPTIONS = (f"{PREFIX}/+/+/status", f"{PREFIX}/+/+/+/status")
# `_tickets` sits where node ids go, but no id can start with '_': a node can never publish there.
TICKET_TRANSITIONS_SUBSCRIPTION = f"{PREFIX}/+/_tickets/+/transitions"
COMMANDS_FILTER = f"{PREFIX}/+/+/commands"  # every node's commands (the server writes there)
COMMAND_ACKS_FILTER = f"{COMMANDS_FILTER}/ack"  # every gate controller's answers (the server reads)
CONFIGS_FILTER = f"{PREFIX}/+/+/+/config"  # every camera's config (the server writes there)
# `_uniforms`, like `_tickets`, sits where node ids go: no node can publish a site's uniform examples.
UNIFORM_EXAMPLES_FILTER = f"{PREFIX}/+/_uniforms/+/examples"  # every site's uniform examples (the server writes)


class TopicError(ValueError):
    """A topic or id that is not part of the contract."""


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is safe as a topic segment, else raise naming ``kind``."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise TopicError(
            f"{kind} {value!r} is not a valid id: use 1-64 letters, digits, '_', '.', '-' "
            "(no '/', '+', '#', spaces), starting with a letter or digit"
        )
    return value


def events_topic(site_id: str, node_id: str, camera_id: str) -> str:
    return "/".join(
        (PREFIX, check_id("site_id", site_id), check_id("node_id", node_id),
         check_id("camera_id", camera_id), "events")
    )


def node_status_topic(site_id: str, node_id: str) -> str:
    return "/".join((PREFIX, check_id("site_id", site_id), check_id("node_id", node_id), "status"))


def camera_status_topic(site_id: str, node_id: str, camera_id: str) -> str:
    return "/".join(
        (PREFIX, check_id("site_id", site_id), check_id("node_id", node_id),
         check_id("camera_id", camera_id), "status")
    )


def node_commands_topic(site_id: str, node_id: str) -> str:
    """Commands for the devices behind one node (its gate controllers), from the node or the server.

    A gate controller subscribes here; the edge publishes ``open`` when a rule allows an entry, and
    the server may publish one when a guard opens a gate from the console.
    """
    return "/".join((PREFIX, check_id("site_id", site_id), check_id("node_id", node_id), "commands"))


def node_command_ack_topic(site_id: str, node_id: str) -> str:
    """Where a device acknowledges a command of ``node_commands_topic`` (a sibling, so one
    subscription to the commands topic never receives the acks)."""
    return node_commands_topic(site_id, node_id) + "/ack"


def camera_config_topic(site_id: str, node_id: str, camera_id: str) -> str:
    """Where the server publishes a camera's zone config saved in the console (QoS 1, retained).

    Retained, so a node that was offline (or restarts) gets the newest config when it subscribes.
    """
    return "/".join(
        (PREFIX, check_id("site_id", site_id), check_id("node_id", node_id),
         check_id("camera_id", camera_id), "config")
    )


def node_configs_filter(site_id: str, node_id: str) -> str:
    """The one subscription a node needs for the configs of all its cameras (and all its ACL lets it read)."""
    return "/".join((PREFIX, check_id("site_id", site_id), check_id("node_id", node_id), "+", "config"))


@dataclass(frozen=True)
class EventTopic:
    site_id: str
    node_id: str
    camera_id: str


def _camera_topic_ids(topic: str, leaf: str) -> EventTopic:
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != ROOT or parts[1] != VERSION or parts[5] != leaf:
        raise TopicError(f"not a {PREFIX} {leaf} topic: {topic!r}")
    site_id, node_id, camera_id = parts[2:5]
    for kind, value in (("site_id", site_id), ("node_id", node_id), ("camera_id", camera_id)):
        check_id(kind, value)
    return EventTopic(site_id, node_id, camera_id)


def parse_events_topic(topic: str) -> EventTopic:
    """Split an events topic into its ids; raise TopicError for anything else."""
    return _camera_topic_ids(topic, "events")


def parse_camera_config_topic(topic: str) -> EventTopic:
    """Split a camera config topic into its ids; raise TopicError for anything else."""
    return _camera_topic_ids(topic, "config")


def ticket_transitions_topic(site_id: str, ticket_id: int) -> str:
    """Where the server publishes each lifecycle transition of one ticket (QoS 1, not retained).

    The last segment is ``transitions``, so the server's own ``+/+/+/events`` subscription never
    receives these.
    """
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool) or ticket_id < 1:
        raise TopicError(f"ticket_id {ticket_id!r} is not a positive integer")
    return "/".join((PREFIX, check_id("site_id", site_id), "_tickets", str(ticket_id), "transitions"))


def uniform_examples_topic(site_id: str, uniform_id: str) -> str:
    """Where the server publishes the examples a supervisor added to one uniform (QoS 1, retained).

    Per site, not per node: every node of the site that knows the uniform refits its profile from
    them. Retained, so a node that was offline gets the newest list when it subscribes.
    """
    return "/".join((PREFIX, check_id("site_id", site_id), "_uniforms", check_id("uniform_id", uniform_id),
                     "examples"))


def site_uniform_examples_filter(site_id: str) -> str:
    """The one subscription a node needs for its site's uniform examples (and all its ACL lets it read of them)."""
    return "/".join((PREFIX, check_id("site_id", site_id), "_uniforms", "+", "examples"))


def parse_uniform_examples_topic(topic: str) -> tuple[str, str]:
    """(site_id, uniform_id) of a uniform examples topic; raise TopicError for anything else."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[:2] != [ROOT, VERSION] or parts[3] != "_uniforms" or parts[5] != "examples":
        raise TopicError(f"not a {PREFIX} uniform examples topic: {topic!r}")
    return check_id("site_id", parts[2]), check_id("uniform_id", parts[4])
