"""Opening a gate for an allowed courier: the MQTT command/ack round trip with the gate controller.

The edge publishes a typed ``GateCommand`` on the node's commands topic, where the gate controller
listens, and waits for the controller's ``GateAck`` on the ack topic; both are logged, so every
opening can be traced to the event (and the uniform score) that caused it.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import GateAck, GateAction, GateCommand, now_utc
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, parse_mqtt_url

log = logging.getLogger(__name__)

KEEP_ACKS = 1000  # recent acks, by command id, for anyone who asks after the logging thread


class GateClient:
    """Publishes gate commands for one node and collects the controllers' acks by command id."""

    def __init__(self, site_id: str, node_id: str, url: str, client_id: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.commands_topic = topics.node_commands_topic(site_id, node_id)
        self.ack_topic = topics.node_command_ack_topic(site_id, node_id)
        self.acks: dict[str, GateAck] = {}
        self.arrived = threading.Condition()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"gridwatch-gate-{site_id}-{node_id}")
        self.client.on_connect = lambda client, *_: client.subscribe(self.ack_topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        connect_client(self.client, parse_mqtt_url(url), tls=tls)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        try:
            ack = GateAck.model_validate_json(message.payload)
        except ValidationError as exc:
            log.warning("ignoring a malformed gate ack: %s", exc)
            return
        with self.arrived:
            self.acks[ack.command_id] = ack
            while len(self.acks) > KEEP_ACKS:
                del self.acks[next(iter(self.acks))]
            self.arrived.notify_all()

    def open(self, gate_id: str, event_id: str | None, reason: str) -> GateCommand:
        """Publish ``open`` for ``gate_id`` at QoS 1 and return the command (its id keys the ack)."""
        self.subscribed.wait(10)
        command = GateCommand(command=GateAction.OPEN, gate_id=gate_id, event_id=event_id, reason=reason,
                              issued_at=now_utc())
        self.client.publish(self.commands_topic, command.to_json(), qos=1)
        log.info("gate %s: open sent (command %s, event %s, %s)", gate_id, command.command_id, event_id, reason)
        return command

    def wait_ack(self, command_id: str, timeout_s: float) -> GateAck | None:
        """The controller's ack, or None when it did not answer in time (the entry log says so)."""
        with self.arrived:
            self.arrived.wait_for(lambda: command_id in self.acks, timeout_s)
            ack = self.acks.get(command_id)
        log.info("gate command %s: %s", command_id, ack.status if ack else f"no ack within {timeout_s} s")
        return ack

    def open_and_log(self, gate_id: str, event_id: str | None, reason: str, timeout_s: float) -> GateCommand:
        """Send, then await the ack on a thread of its own: the camera pipeline never blocks on a gate."""
        command = self.open(gate_id, event_id, reason)
        threading.Thread(target=self.wait_ack, args=(command.command_id, timeout_s), daemon=True,
                         name=f"gate-ack-{gate_id}").start()
        return command

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
