"""``GET /api/evidence-access``: the evidence access log for admins, who viewed which snapshot when.

The log is written by :func:`gridwatch.server.privacy.evidence_log.record` on every snapshot read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from gridwatch.server.api import auth
from gridwatch.server.api.schemas import Page, RowIdQuery
from gridwatch.server.models import EvidenceAccess


class AccessOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    ticket_id: int | None
    actor: str
    role: str
    principal_kind: str
    client: str
    user_agent: str
    at: datetime


router = APIRouter(prefix="/api", tags=["privacy"])


@router.get("/evidence-access", response_model=Page[AccessOut], dependencies=[auth.require_roles("admin")])
def list_access(request: Request, sha256: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
                ticket_id: RowIdQuery = None, actor: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> Page[AccessOut]:
    """Who viewed evidence, newest first; filter by snapshot, ticket or person."""
    query = sa.select(EvidenceAccess)
    for column, value in ((EvidenceAccess.sha256, sha256), (EvidenceAccess.ticket_id, ticket_id),
                          (EvidenceAccess.actor, actor)):
        if value is not None:
            query = query.where(column == value)
    with request.app.state.sessions() as session:
        total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(EvidenceAccess.id.desc()).limit(limit).offset(offset))
        items = [AccessOut.model_validate(r) for r in rows]
    return Page[AccessOut](items=items, total=total, limit=limit, offset=offset)
