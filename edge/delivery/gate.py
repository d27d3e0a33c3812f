"""Opening a gate for an allowed courier: the MQTT command/ack round trip with the gate controller.

The edge publishes a typed ``GateCommand`` on the node's commands topic, where the gate controller
listens, and waits for the controller's ``GateAck`` on the ack topic; both are logged, so every
opening can be traced to the event (and the uniform score) that caused it.

A gate command is valid until its ``expires_at`` and is never queued: paho keeps QoS 1 messages
published while disconnected and sends them on reconnect, which would open a gate minutes after
the courier left. So :meth:`GateClient.open` refuses when the client is not connected, takes back
whatever paho kept when the publish did not go out, and drops unacknowledged commands when the link
falls; under MQTT 5 the publish also carries a Message Expiry Interval, so the broker discards a
command it could not deliver in time. The controller checks ``expires_at`` all the same.
"""

from __future__ import annotations

import logging
import threading

from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import GATE_COMMAND_TTL_S, GateAck, GateCommand
from gridwatch.broker.gate_command import GateNotSent, publish_command, unqueue
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, new_client, parse_mqtt_url

log = logging.getLogger(__name__)

KEEP_ACKS = 1000  # recent acks, by command id, for anyone who asks after the logging thread
NOT_SENT = "not_sent"
SENT = "sent"


class GateClient:
    """Publishes gate commands for one node and collects the controllers' acks by command id."""

    def __init__(self, site_id: str, node_id: str, url: str, client_id: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.commands_topic = topics.node_commands_topic(site_id, node_id)
        self.ack_topic = topics.node_command_ack_topic(site_id, node_id)
        self.acks: dict[str, GateAck] = {}
        self.arrived = threading.Condition()
        self.subscribed = threading.Event()
        self.client = new_client(client_id or f"gridwatch-gate-{site_id}-{node_id}")
        self.client.on_connect = lambda client, *_: client.subscribe(self.ack_topic, qos=1)
        # A command not acknowledged by the broker when the link fell is void: never resend it later.
        self.client.on_disconnect = lambda client, *_: unqueue(client)
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

    def open(self, gate_id: str, event_id: str | None, reason: str,
             ttl_s: float = GATE_COMMAND_TTL_S, factors: tuple[str, ...] = ()) -> GateCommand:
        """Publish ``open`` for ``gate_id``, valid ``ttl_s``; return the command (its id keys the ack).

        Raises :class:`GateNotSent` when the broker is unreachable: a courier waits a few seconds at
        most, so the subscription wait is bounded by the command's own validity.
        """
        command = GateCommand.open_gate(gate_id, reason, ttl_s=ttl_s, event_id=event_id, factors=factors)
        self.subscribed.wait(min(10.0, ttl_s))
        try:
            publish_command(self.client, self.commands_topic, command)
        except GateNotSent as exc:
            log.warning("gate %s: open NOT sent (command %s, event %s): %s", gate_id, command.command_id,
                        event_id, exc.reason)
            raise
        log.info("gate %s: open sent (command %s, event %s, %s)", gate_id, command.command_id, event_id, reason)
        return command

    def wait_ack(self, command_id: str, timeout_s: float) -> GateAck | None:
        """The controller's ack, or None when it did not answer in time (the entry log says so)."""
        with self.arrived:
            self.arrived.wait_for(lambda: command_id in self.acks, timeout_s)
            ack = self.acks.get(command_id)
        log.info("gate command %s: %s", command_id, ack.status if ack else f"no ack within {timeout_s} s")
        return ack

    def open_and_log(self, gate_id: str, event_id: str | None, reason: str, timeout_s: float,
                     ttl_s: float = GATE_COMMAND_TTL_S, factors: tuple[str, ...] = ()) -> dict[str, str]:
        """Send, then await the ack on a thread of its own: the camera pipeline never blocks on a gate.

        Returns the attributes the ``courier_entry`` event records: ``gate`` (``sent`` or
        ``not_sent``), the command id, and ``gate_reason`` when it was not sent.
        """
        try:
            command = self.open(gate_id, event_id, reason, ttl_s, factors)
        except GateNotSent as exc:
            return {"gate": NOT_SENT, "gate_reason": exc.reason, "gate_command_id": exc.command.command_id}
        threading.Thread(target=self.wait_ack, args=(command.command_id, timeout_s), daemon=True,
                         name=f"gate-ack-{gate_id}").start()
        return {"gate": SENT, "gate_command_id": command.command_id}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
