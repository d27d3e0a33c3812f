"""SLA clocks: each clocked stage gets a due time from the category's limit and the work calendar,
a warning shortly before it, and on breach an escalation one level up with a supervision notice
(督办), again after every further limit, until the policy's last level.

The sweeper is a compare-and-set on ``sla_next_at``: two replicas sweeping at once cannot both
escalate the same breach, and a ticket that changed stage meanwhile has a new clock and is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.clock import Clock
from gridwatch.server.models import Ticket, TicketTransition
from gridwatch.server.periodic import PeriodicJob
from gridwatch.server.tickets.calendar import TimeLimit
from gridwatch.server.tickets.categories import ESCALATION_LEVELS, Category, CategoryStore, CategoryTable

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


def arm(stage: str, start: datetime, category: Category, table: CategoryTable) -> dict[str, Any]:
    """Clock columns for a ticket entering ``stage`` at ``start`` (all None: no clock)."""
    limit = category.time_limits.get(stage)
    if limit is None:
        return {"due_at": None, "warn_at": None, "sla_next_at": None}
    return clock_until(start, table.calendar.add(start, limit), category, table)


def clock_until(start: datetime, due: datetime, category: Category, table: CategoryTable) -> dict[str, Any]:
    warn = due - (due - start) * table.policy(category).warn_before_fraction
    warn_at = warn if start < warn < due else None
    return {"due_at": due, "warn_at": warn_at, "sla_next_at": warn_at or due}


def extend(due: datetime, extra: TimeLimit, category: Category, table: CategoryTable,
           now: datetime) -> dict[str, Any]:
    """Clock columns after an approved extension of ``extra`` beyond the current due time."""
    return clock_until(now, table.calendar.add(due, extra), category, table)


def sweep(session: Session, categories: CategoryStore, clock: Clock,
          announce: Callable[[list[TicketTransition]], None] | None = None) -> list[TicketTransition]:
    """Warn and escalate every ticket whose next SLA moment has come; commits; returns the notices."""
    now = clock.now()
    _, table = categories.current(session)
    due = session.scalars(
        sa.select(Ticket).where(Ticket.sla_next_at <= now).order_by(Ticket.sla_next_at).limit(SWEEP_BATCH)
    ).all()
    session.rollback()
    notices: list[TicketTransition] = []
    for ticket in due:
        notice = _advance(session, ticket, table, now)
        if notice is not None:
            notices.append(notice)
    if notices and announce is not None:
        announce(notices)
    return notices


def _advance(session: Session, ticket: Ticket, table: CategoryTable, now: datetime) -> TicketTransition | None:
    category = table.for_type(ticket.type)
    policy = table.policy(category)
    values: dict[str, Any]
    if ticket.warn_at is not None and ticket.sla_next_at == ticket.warn_at and ticket.due_at and now < ticket.due_at:
        action, details = "sla_warning", {"due_at": ticket.due_at.isoformat()}
        values = {"sla_next_at": ticket.due_at}
    else:
        level = ticket.escalation_level
        rank = ESCALATION_LEVELS[level]
        higher = [lvl for lvl in policy.levels if ESCALATION_LEVELS.index(lvl) > ESCALATION_LEVELS.index(rank)]
        action = "escalate"
        if higher:
            target = higher[0]
            unit = getattr(ticket, f"{target}_id")
            limit = policy.every or category.time_limits[ticket.stage]
            next_due = table.calendar.add(now, limit)
            values = {"escalation_level": ESCALATION_LEVELS.index(target), "overdue": True,
                      "due_at": next_due, "warn_at": None, "sla_next_at": next_due}
            details = {"level": target, "unit": unit, "stage": ticket.stage, "breached_due_at":
                       ticket.due_at.isoformat() if ticket.due_at else None, "notice": "督办"}
        else:  # already at the top: record the breach once, stop the clock
            values = {"overdue": True, "sla_next_at": None}
            details = {"level": rank, "unit": getattr(ticket, f"{rank}_id", None), "stage": ticket.stage,
                       "breached_due_at": ticket.due_at.isoformat() if ticket.due_at else None,
                       "notice": "督办", "top_level": True}
    updated = session.execute(
        sa.update(Ticket).where(Ticket.id == ticket.id, Ticket.sla_next_at == ticket.sla_next_at,
                                Ticket.stage == ticket.stage).values(updated_at=now, **values)
    ).rowcount
    if updated != 1:  # another replica did it, or the ticket moved on
        session.rollback()
        return None
    notice = TicketTransition(ticket_id=ticket.id, action=action, from_stage=ticket.stage, to_stage=ticket.stage,
                              actor="system", role="system", at=now, version=ticket.version, details=details)
    session.add(notice)
    session.commit()
    log.info("ticket %s: %s %s", ticket.id, action, details.get("level", ""))
    return notice


def sweeper(sessions: Callable[[], Session], categories: CategoryStore, clock: Clock, interval_s: float,
            announce: Callable[[list[TicketTransition]], None]) -> PeriodicJob:
    """:func:`sweep` as a background job of the server."""

    def run() -> None:
        with sessions() as session:
            sweep(session, categories, clock, announce)

    return PeriodicJob("sla-sweep", run, interval_s, stop_timeout_s=10)
