"""``GET /api/sequence-gaps`` and ``GET /api/node-sequences``: the events edge nodes lost or have
not delivered yet, as server/ingest/sequence.py detects them from each node's sequence numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from gridwatch.broker.topics import ID_PATTERN
from gridwatch.server.api import auth
from gridwatch.server.api.deps import SessionDep
from gridwatch.server.api.schemas import Page
from gridwatch.server.ingest.sequence import gaps_query
from gridwatch.server.models import NodeSequence, SequenceGap

router = APIRouter(prefix="/api")
# Managers, and monitoring tools on an API token (scope ``read``): a gap is an operational alarm.
READERS = (*auth.MANAGERS, "integrator")

QueryId = Annotated[str | None, Query(pattern=ID_PATTERN)]


class SequenceGapOut(BaseModel):
    """Numbers ``first_seq``..``last_seq`` a node skipped; ``missing`` of them have still not arrived."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: str
    node_id: str
    first_seq: int
    last_seq: int
    missing: int
    detected_at: datetime
    closed_at: datetime | None


class NodeSequenceOut(BaseModel):
    """One line per node: ``status`` is ``gaps`` while events are missing, ``reset`` once the node numbered
    from 1 again under a new outbox epoch (a wiped or reinstalled box: not thousands of lost events), else ``ok``."""

    site_id: str
    node_id: str
    status: Literal["ok", "gaps", "reset"]
    last_seq: int | None
    open_gaps: int
    missing: int
    updated_at: datetime
    epoch: str | None
    resets: int
    reset_at: datetime | None
    seq_before_reset: int | None


@router.get("/sequence-gaps", response_model=Page[SequenceGapOut], dependencies=[auth.require_roles(*READERS)])
def list_sequence_gaps(session: SessionDep, site_id: QueryId = None, node_id: QueryId = None,
                       open: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> Page[SequenceGapOut]:
    """Newest first; ``open=true`` lists only gaps still missing events."""
    query = gaps_query(site_id, node_id, open_only=open)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.limit(limit).offset(offset)).all()
    return Page[SequenceGapOut](items=[SequenceGapOut.model_validate(r) for r in rows], total=total,
                                limit=limit, offset=offset)


@router.get("/node-sequences", response_model=list[NodeSequenceOut],
            dependencies=[auth.require_roles(*READERS)])
def list_node_sequences(session: SessionDep) -> list[NodeSequenceOut]:
    """Every node that sent a numbered event: its highest number and what is still missing."""
    open_gaps = (sa.select(SequenceGap.site_id, SequenceGap.node_id, sa.func.count().label("gaps"),
                           sa.func.sum(SequenceGap.missing).label("missing"))
                 .where(SequenceGap.closed_at.is_(None)).group_by(SequenceGap.site_id, SequenceGap.node_id).subquery())
    rows = session.execute(
        sa.select(NodeSequence, open_gaps.c.gaps, open_gaps.c.missing)
        .outerjoin(open_gaps, sa.and_(open_gaps.c.site_id == NodeSequence.site_id,
                                      open_gaps.c.node_id == NodeSequence.node_id))
        .order_by(NodeSequence.site_id, NodeSequence.node_id)
    ).all()
    return [NodeSequenceOut(site_id=n.site_id, node_id=n.node_id,
                            status="gaps" if gaps else ("reset" if n.resets else "ok"), last_seq=n.last_seq,
                            open_gaps=gaps or 0, missing=int(missing or 0), updated_at=n.updated_at, epoch=n.epoch,
                            resets=n.resets, reset_at=n.reset_at, seq_before_reset=n.seq_before_reset)
            for n, gaps, missing in rows]
