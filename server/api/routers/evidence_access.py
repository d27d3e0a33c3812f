"""``GET /api/evidence-access``: the evidence access log for admins, who viewed which snapshot when.

The log is written by :func:`gridwatch.server.privacy.evidence_log.record` on every snapshot read, and
by ``POST /api/evidence-access`` from an edge node (token scope ``evidence:log``) before it opens an
unblurred original it keeps encrypted (:func:`gridwatch.server.privacy.evidence_log.record_original`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from gridwatch.server.api import auth
from gridwatch.server.api.schemas import ErrorResponse, Page, RowIdQuery
from gridwatch.server.models import EvidenceAccess
from gridwatch.server.privacy import evidence_log


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
    purpose: str


class OriginalAccessIn(BaseModel):
    """An edge node opening the unblurred original of a snapshot: who asked, and why."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="the (blurred) snapshot the original belongs to")
    actor: str = Field(min_length=1, max_length=64, description="the person who asked for it")
    purpose: str = Field(min_length=3, max_length=200, description="why, e.g. a police request number")


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


@router.post("/evidence-access", status_code=201, responses={403: {"model": ErrorResponse}})
def log_original_access(body: OriginalAccessIn, request: Request) -> dict[str, str]:
    """Log an edge node's opening of an unblurred original (the node decrypts only after this answers 201)."""
    principal = request.state.principal
    if principal is None or principal.kind != "token":
        raise HTTPException(403, "originals are opened on an edge node, which logs with its API token")
    evidence_log.record_original(request, body.sha256, body.actor, body.purpose)
    return {"status": "logged"}
