"""What the routers share: the database session dependency and paging.

A route asks for :data:`SessionDep` and gets a session from ``request.app.state.sessions`` (made
by the app's lifespan), closed when the response is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


def page(session: Session, query: sa.Select[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of ``query``'s rows and how many rows it has in all."""
    total = session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    return list(session.scalars(query.limit(limit).offset(offset))), total
