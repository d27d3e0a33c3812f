"""Sending a gate command without ever queueing it: shared by the edge's gate client and the console.

paho keeps QoS 1 messages published while disconnected (and those not yet acknowledged when the link
fell) and sends them on reconnect. For a ticket transition that is what we want; for ``open gate``
it means a gate opening minutes after the courier left. So a gate command goes out now or not at
all: :func:`publish_command` refuses when the client is not connected and takes back whatever paho
kept when the publish did not go out; a client that only sends gate commands calls :func:`unqueue`
when its link drops. Under MQTT 5 the publish carries a Message Expiry Interval, so the broker
discards a command it could not deliver in time; under 3.1.1 the payload's ``expires_at`` alone
guards it, which every controller checks (``gridwatch gate-controller``).
"""

from __future__ import annotations

import math

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridwatch.broker.contract import GateCommand

BROKER_UNAVAILABLE = "broker unavailable"


class GateNotSent(RuntimeError):
    """The command did not leave this box; ``reason`` goes into the event's attributes."""

    def __init__(self, command: GateCommand, reason: str) -> None:
        super().__init__(f"gate {command.gate_id}: open not sent ({reason})")
        self.command, self.reason = command, reason


def unqueue(client: paho.Client, mids: set[int] | None = None) -> int:
    """Take messages (all, or those ``mids``) out of paho's outgoing queue, so none is sent on reconnect.

    paho has no public call for this; without it a QoS 1 command published in the instant the link
    fell would open the gate whenever the link came back. Returns how many were dropped.
    """
    with client._out_message_mutex:
        doomed = [mid for mid in client._out_messages if mids is None or mid in mids]
        for mid in doomed:
            del client._out_messages[mid]
        client._inflight_messages = sum(m.state != paho.mqtt_ms_queued for m in client._out_messages.values())
    return len(doomed)


def publish_command(client: paho.Client, topic: str, command: GateCommand) -> int:
    """Publish once at QoS 1, never retained, with the MQTT 5 expiry when the link speaks it; raise
    :class:`GateNotSent` rather than let paho queue it (server console and edge share this).
    Returns the message id, which the caller drops from paho's queue if its link falls."""
    if not client.is_connected():
        raise GateNotSent(command, BROKER_UNAVAILABLE)
    properties = None
    if client.protocol == paho.MQTTv5:
        properties = Properties(PacketTypes.PUBLISH)
        # The validity as the sender's clock gave it (a test's manual clock included); the controller
        # compares expires_at with its own clock.
        ttl_s = (command.expires_at - command.issued_at).total_seconds()
        properties.MessageExpiryInterval = max(1, math.ceil(ttl_s))
    info = client.publish(topic, command.to_json(), qos=1, retain=False, properties=properties)
    if info.rc != paho.MQTT_ERR_SUCCESS:
        unqueue(client, {info.mid})
        raise GateNotSent(command, BROKER_UNAVAILABLE if info.rc == paho.MQTT_ERR_NO_CONN
                          else paho.error_string(info.rc))
    return info.mid
