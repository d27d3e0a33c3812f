"""``gridwatch gate-controller``: a small reference gate controller for installers wiring a relay.

It listens on one node's commands topic and answers every command on the ack topic. The rule it
enforces is the contract's: a gate command is valid until ``expires_at``, so an expired command
(or one without ``expires_at``, from a sender older than the field) is refused with detail
``expired``, and a ``command_id`` seen before is refused with ``replayed``; only a fresh command runs
the action (log it, or ``--exec`` a relay command) and is acked ``done``.

It connects with a clean session: nothing a broker kept for it while it was away is delivered late.
Brokers may still hold a message briefly (a 3.1.1 broker has no message expiry), which is why
``expires_at`` is checked on every command regardless. The check uses this machine's clock: keep it
NTP-synced with the senders'.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import click
from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import GateAck, GateAckStatus, GateCommand, now_utc

log = logging.getLogger(__name__)

EXPIRED = "expired"
REPLAYED = "replayed"
MALFORMED = "malformed"
KEEP_SEEN = 10_000  # command ids remembered; older ones are long expired, so expiry refuses them anyway
EXEC_TIMEOUT_S = 10.0

Action = Callable[[GateCommand], str | None]  # None: done; a string: why it failed


def log_action(command: GateCommand) -> str | None:
    """The default action: say what a relay would do, for a dry run of the wiring."""
    log.info("gate %s: OPEN (command %s, %s)", command.gate_id, command.command_id, command.reason)
    return None


def exec_action(cmd: str) -> Action:
    """Run ``cmd`` per command (the relay), with the gate and command ids in its environment."""
    def run(command: GateCommand) -> str | None:
        env = {**os.environ, "GRIDWATCH_GATE_ID": command.gate_id, "GRIDWATCH_COMMAND_ID": command.command_id}
        try:
            done = subprocess.run(shlex.split(cmd), env=env, timeout=EXEC_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"exec failed: {exc}"[:200]
        return None if done.returncode == 0 else f"exec exit {done.returncode}"
    return run


class GateDecider:
    """The controller's judgement, without MQTT: expired or replayed commands are refused."""

    def __init__(self, action: Action = log_action, gate_id: str | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.action, self.gate_id, self.clock = action, gate_id, clock
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.opened: list[GateCommand] = []
        self.refused: list[tuple[str, str]] = []  # (command_id, reason)

    def decide(self, payload: bytes) -> GateAck | None:
        """The ack for one raw command; None when it is not ours or carries no command id."""
        try:
            raw = json.loads(payload)
        except ValueError:
            log.warning("ignoring a command that is not JSON")
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("command_id"), str):
            log.warning("ignoring a command without a command_id")
            return None
        command_id, gate_id = raw["command_id"], str(raw.get("gate_id", ""))
        if self.gate_id is not None and gate_id != self.gate_id:
            return None
        if "expires_at" not in raw:  # an older sender: no stated validity is no validity
            return self._refuse(command_id, gate_id, EXPIRED)
        try:
            command = GateCommand.model_validate(raw)
        except ValidationError as exc:
            log.warning("refusing a malformed command %s: %s", command_id, exc)
            return self._refuse(command_id, gate_id, MALFORMED)
        if command.expired(self.clock()):
            return self._refuse(command_id, gate_id, EXPIRED)
        if command_id in self.seen:
            return self._refuse(command_id, gate_id, REPLAYED)
        self.seen[command_id] = None
        while len(self.seen) > KEEP_SEEN:
            self.seen.popitem(last=False)
        failure = self.action(command)
        if failure is not None:
            return self._ack(command_id, gate_id, GateAckStatus.FAILED, failure)
        self.opened.append(command)
        return self._ack(command_id, gate_id, GateAckStatus.DONE, None)

    def _refuse(self, command_id: str, gate_id: str, reason: str) -> GateAck | None:
        log.warning("gate %s: refusing command %s: %s", gate_id, command_id, reason)
        self.refused.append((command_id, reason))
        return self._ack(command_id, gate_id, GateAckStatus.REFUSED, reason)

    def _ack(self, command_id: str, gate_id: str, status: GateAckStatus, detail: str | None) -> GateAck | None:
        try:
            return GateAck(command_id=command_id, gate_id=gate_id, status=status, detail=detail, at=self.clock())
        except ValidationError:  # an id the contract cannot echo: nobody could match the ack anyway
            return None


class GateControllerClient:
    """The decider on MQTT: a clean session on the node's commands topic, acks on the ack topic."""

    def __init__(self, url: str, site_id: str, node_id: str, decider: GateDecider,
                 client_id: str | None = None) -> None:
        from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url

        self.decider = decider
        self.commands_topic = topics.node_commands_topic(site_id, node_id)
        self.ack_topic = topics.node_command_ack_topic(site_id, node_id)
        self.subscribed = threading.Event()
        self.client = new_client(client_id or f"gridwatch-gate-controller-{site_id}-{node_id}")
        self.client.on_connect = lambda client, *_: client.subscribe(self.commands_topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.lock = threading.Lock()
        connect_client(self.client, parse_mqtt_url(url), persistent=False)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            ack = self.decider.decide(message.payload)
        if ack is not None:
            client.publish(self.ack_topic, ack.to_json(), qos=1)

    def start(self) -> None:
        self.client.loop_start()

    def run_forever(self) -> None:
        self.client.loop_forever()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@click.command("gate-controller")
@click.option("--mqtt-url", required=True, help="The site broker, e.g. mqtts://user:pass@broker:8883.")
@click.option("--site-id", required=True)
@click.option("--node-id", required=True, help="The edge node whose commands topic this gate listens on.")
@click.option("--gate-id", default=None, help="Only act on commands for this gate (default: every gate).")
@click.option("--exec", "exec_cmd", default=None,
              help="Command to run per accepted open (the relay); exit 0 acks done, else failed.")
def gate_controller(mqtt_url: str, site_id: str, node_id: str, gate_id: str | None, exec_cmd: str | None) -> None:
    """A reference gate controller: refuses expired or replayed commands, acks every command."""
    decider = GateDecider(exec_action(exec_cmd) if exec_cmd else log_action, gate_id)
    GateControllerClient(mqtt_url, site_id, node_id, decider).run_forever()
