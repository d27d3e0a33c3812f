"""Opening a gate by hand from the console (a courier the camera did not recognise, a delivery
van): the reason is required, the opening is stored with who did it before the command is sent,
and the command is the contract's ``GateCommand`` on the node's commands topic.

The command is valid for ``GATE_COMMAND_TTL_S`` and never queued: when the server's MQTT link is
down the opening is still recorded (``published`` false) and the answer is 503 with the reason, so
the guard opens the gate another way instead of it swinging open when the link returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from gridwatch.broker import contract, topics
from gridwatch.broker.gate_command import BROKER_UNAVAILABLE, GateNotSent
from gridwatch.server.api import auth
from gridwatch.server.api.deps import SessionDep
from gridwatch.server.api.schemas import ErrorResponse, TopicId
from gridwatch.server.models import GateOpening

router = APIRouter(prefix="/api")
GATE_KEEPERS = ("admin", "supervisor", "security")


class OpenGateIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class GateOpeningOut(BaseModel):
    id: int
    command_id: str
    site_id: str
    node_id: str
    gate_id: str
    reason: str
    actor: str
    role: str
    at: datetime
    published: bool


@router.post("/gates/{site_id}/{node_id}/{gate_id}/open", response_model=GateOpeningOut, status_code=201,
             dependencies=[auth.require_roles(*GATE_KEEPERS)],
             responses={503: {"model": ErrorResponse, "description": "Not sent: the broker is unavailable "
                                                                       "(the attempt is still audited)."}})
def open_gate(site_id: TopicId, node_id: TopicId, gate_id: TopicId, body: OpenGateIn, request: Request,
              session: SessionDep, principal: auth.CurrentPrincipal) -> GateOpeningOut:
    """Record the opening (audit first), then publish the open command to the node's gate controller."""
    now = request.app.state.clock.now()
    command = contract.GateCommand.open_gate(gate_id, body.reason, issued_at=now)
    topic = topics.node_commands_topic(site_id, node_id)
    row = GateOpening(command_id=command.command_id, site_id=site_id, node_id=node_id, gate_id=gate_id,
                      reason=body.reason, actor=principal.person_id, role=principal.role, at=now, published=False)
    session.add(row)
    session.commit()
    publisher = request.app.state.publisher
    try:
        if publisher is None or not publisher.connected:
            raise GateNotSent(command, BROKER_UNAVAILABLE)
        publisher.send_gate_command(topic, command)
    except GateNotSent as exc:
        raise HTTPException(503, detail=exc.reason) from exc
    row.published = True
    session.commit()
    return GateOpeningOut.model_validate(row, from_attributes=True)


@router.get("/gates/openings", response_model=list[GateOpeningOut], dependencies=[auth.require_roles(*GATE_KEEPERS)])
def list_openings(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[GateOpeningOut]:
    rows = session.scalars(sa.select(GateOpening).order_by(GateOpening.id.desc()).limit(limit))
    return [GateOpeningOut.model_validate(r, from_attributes=True) for r in rows]
