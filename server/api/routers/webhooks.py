"""REST for outbound webhooks (admins only): subscriptions, and each one's delivery log.

Sending, signing and retrying are :mod:`~gridwatch.server.integrations.webhooks`; these routes
only write subscriptions and read what the delivery worker logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from gridwatch.server.api import auth
from gridwatch.server.api.schemas import ErrorResponse, Page, RowId
from gridwatch.server.integrations import webhooks
from gridwatch.server.models import WebhookAttempt, WebhookDelivery, WebhookSubscription


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="http(s) endpoint that receives a POST per transition")
    secret: str = Field(min_length=16, max_length=200, description="signs each body; not shown again")
    events: list[Annotated[str, Field(pattern=r"^(\*|[a-z_]{1,32})$")]] = Field(
        default_factory=lambda: [webhooks.ALL], min_length=1, max_length=50,
        description="transition actions to send (open, register, dispatch, close, escalate, …) or * for all")

    @field_validator("url")
    @classmethod
    def _short(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("at most 2000 characters")
        return value


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    active: bool
    created_by: str
    created_at: datetime


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    transition_id: int
    ticket_id: int
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    log: list[AttemptOut]


router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], dependencies=[auth.require_roles("admin")])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


@router.post("", response_model=SubscriptionOut, status_code=201)
def create_subscription(body: SubscriptionIn, request: Request, principal: auth.CurrentPrincipal) -> SubscriptionOut:
    if refused := webhooks.refused_target(str(body.url), request.app.state.settings.webhook_allow_private_targets):
        raise HTTPException(422, refused)
    with request.app.state.sessions() as session:
        row = WebhookSubscription(url=str(body.url), secret=body.secret, events=sorted(set(body.events)), active=True,
                                  created_by=principal.name, created_at=request.app.state.clock.now())
        session.add(row)
        session.commit()
        return SubscriptionOut.model_validate(row)


@router.get("", response_model=list[SubscriptionOut])
def list_subscriptions(request: Request) -> list[SubscriptionOut]:
    with request.app.state.sessions() as session:
        rows = session.scalars(sa.select(WebhookSubscription).order_by(WebhookSubscription.id))
        return [SubscriptionOut.model_validate(r) for r in rows]


@router.delete("/{subscription_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_subscription(subscription_id: RowId, request: Request) -> Response:
    """Removes the subscription with its pending deliveries and log."""
    with request.app.state.sessions() as session:
        deleted = session.execute(sa.delete(WebhookSubscription).where(WebhookSubscription.id == subscription_id))
        session.commit()
    if deleted.rowcount != 1:
        raise HTTPException(404, f"no webhook subscription {subscription_id}")
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", response_model=Page[DeliveryOut], responses=NOT_FOUND)
def list_deliveries(subscription_id: RowId, request: Request,
                    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> Page[DeliveryOut]:
    """The delivery log, newest first: each delivery's state and every attempt (status, latency, error)."""
    with request.app.state.sessions() as session:
        if session.get(WebhookSubscription, subscription_id) is None:
            raise HTTPException(404, f"no webhook subscription {subscription_id}")
        query = sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
        rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset)))
        attempts: dict[int, list[AttemptOut]] = {r.id: [] for r in rows}
        for attempt in session.scalars(sa.select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(attempts))
                                       .order_by(WebhookAttempt.id)):
            attempts[attempt.delivery_id].append(AttemptOut.model_validate(attempt))
        items = [DeliveryOut.model_validate({**{c: getattr(r, c) for c in DeliveryOut.model_fields if c != "log"},
                                             "log": attempts[r.id]}) for r in rows]
    return Page[DeliveryOut](items=items, total=total, limit=limit, offset=offset)
