"""Publish ticket transitions to integrators over MQTT, after they are committed.

Publishing is after the commit and best effort beyond paho's own QoS 1 queue: the audit trail in
the database is the record, ``GET /api/tickets/{id}/transitions`` replays it, and a message lost
to a server crash between commit and publish can be recovered from there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from gridwatch.broker import contract, topics
from gridwatch.broker.gate_command import publish_command, unqueue
from gridwatch.broker.mqtt_url import TlsFiles, connect_client, parse_mqtt_url
from gridwatch.server.models import Ticket, TicketTransition

log = logging.getLogger(__name__)

QOS = 1
KEEPALIVE_S = 30


def payloads(session: Session, entries: Sequence[TicketTransition]) -> list[tuple[str, contract.TicketTransition]]:
    """Topic and contract payload for each audit entry."""
    ids = sorted({e.ticket_id for e in entries})
    places = {row.id: row for row in session.execute(
        sa.select(Ticket.id, Ticket.site_id, Ticket.grid_id, Ticket.type).where(Ticket.id.in_(ids)))}
    out = []
    for e in entries:
        place = places[e.ticket_id]
        out.append((topics.ticket_transitions_topic(place.site_id, e.ticket_id), contract.TicketTransition(
            transition_id=e.id, ticket_id=e.ticket_id, site_id=place.site_id, grid_id=place.grid_id,
            type=place.type, action=e.action, from_stage=e.from_stage, to_stage=e.to_stage, actor=e.actor,
            role=e.role, at=e.at, version=e.version, details=e.details)))
    return out


class TransitionPublisher:
    """A plain QoS 1 publishing client with its own connection (ingest's client only subscribes).

    Besides transitions it carries the server's other outgoing messages (:meth:`send`): zone configs
    and gate commands, so the server holds one publishing connection, not one per purpose.
    """

    def __init__(self, mqtt_url: str, client_id: str, tls: TlsFiles | None = None) -> None:
        self._endpoint, self._tls = parse_mqtt_url(mqtt_url), tls
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub-{uuid.uuid4().hex[:6]}",
                                   protocol=mqtt.MQTTv311)
        self._client.reconnect_delay_set(1, 30)
        # Gate commands in flight when the link falls are void (never resent on reconnect); the
        # transitions sharing this client keep paho's QoS 1 retry.
        self._gate_mids: set[int] = set()
        self._client.on_publish = lambda client, userdata, mid, *_: self._gate_mids.discard(mid)
        self._client.on_disconnect = lambda client, *_: unqueue(client, set(self._gate_mids))

    def start(self) -> None:
        connect_client(self._client, self._endpoint, KEEPALIVE_S, tls=self._tls)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, session: Session, entries: Sequence[TicketTransition]) -> None:
        for topic, payload in payloads(session, entries):
            info = self._client.publish(topic, payload.to_json(), qos=QOS)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publishing %s failed: %s", topic, mqtt.error_string(info.rc))

    def send(self, topic: str, payload: str, *, retain: bool = False) -> bool:
        """One QoS 1 message besides transitions (a camera's zone config, retained; a gate command);
        False if it could not be queued."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def send_gate_command(self, topic: str, command: contract.GateCommand) -> None:
        """Publish now or raise :class:`~gridwatch.broker.gate_command.GateNotSent`: never queued."""
        mid = publish_command(self._client, topic, command)
        self._gate_mids.add(mid)
