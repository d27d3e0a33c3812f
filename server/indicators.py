"""Indicators of the closed loop per grid / community / street / category / period.

结案率 closed ÷ registered · 按期处置率 closed without any breached limit ÷ closed · 返工率 reworked ÷
reached feedback · 延期率 extended ÷ registered · 满意度 mean rating · mean time per stage. The
ticket columns they read (first time in each stage, rework/extension counts, overdue, rating) are
written in the same transaction as the audit-trail entry that changes them, so an indicator is an
aggregate over one indexed table rather than a replay of millions of audit rows.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.models import Ticket

GroupBy = Literal["grid", "community", "street", "district", "category", "type", "none"]
Period = Literal["day", "month", "none"]

GROUP_COLUMNS = {"grid": Ticket.grid_id, "community": Ticket.community_id, "street": Ticket.street_id,
                 "district": Ticket.district_id, "category": Ticket.subcategory, "type": Ticket.type}
# (name, from column, to column): mean seconds spent between the two stamps
STAGE_SPANS = (
    ("to_register", Ticket.created_at, Ticket.registered_at),
    ("to_dispatch", Ticket.registered_at, Ticket.dispatched_at),
    ("to_accept", Ticket.dispatched_at, Ticket.handling_at),
    ("handling", Ticket.handling_at, Ticket.feedback_at),
    ("to_verify", Ticket.feedback_at, Ticket.verified_at),
    ("to_close", Ticket.verified_at, Ticket.closed_at),
)
COLUMNS = ("group", "period", "tickets", "registered", "voided", "closed", "closed_on_time", "overdue",
           "escalated", "reworked", "extended", "rated", "closing_rate", "on_time_rate", "rework_rate",
           "extension_rate", "satisfaction", *(f"mean_s_{name}" for name, _, _ in STAGE_SPANS))


def _seconds(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, and averaging
        # numerics over a district-month of tickets cost a third of the query.
        return sa.func.date_part("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def _bucket(dialect: str, period: Period, utc_offset_h: int) -> Any:
    if period == "none":
        return sa.literal("all")
    fmt = {"day": ("YYYY-MM-DD", "%Y-%m-%d"), "month": ("YYYY-MM", "%Y-%m")}[period]
    if dialect == "postgresql":
        return sa.func.to_char(Ticket.opened_at + sa.text(f"interval '{utc_offset_h} hours'"), fmt[0])
    return sa.func.strftime(fmt[1], Ticket.opened_at, f"{utc_offset_h:+d} hours")


def _count(condition: Any) -> Any:
    """Rows meeting ``condition``: an aggregate FILTER, cheaper per row than SUM(CASE …)."""
    return sa.func.count().filter(condition)


def compute(session: Session, *, group_by: GroupBy = "none", period: Period = "none",
            since: datetime | None = None, until: datetime | None = None, utc_offset_h: int = 8,
            **filters: str | None) -> list[dict[str, Any]]:
    """One row per (group, period) of tickets opened in [since, until); ``filters`` are ticket
    column = value (grid_id, community_id, street_id, type, category)."""
    dialect = session.get_bind().dialect.name
    group = GROUP_COLUMNS[group_by] if group_by != "none" else sa.literal("all")
    bucket = _bucket(dialect, period, utc_offset_h)
    query = sa.select(
        group.label("group"), bucket.label("period"),
        sa.func.count().label("tickets"),
        sa.func.count(Ticket.registered_at).label("registered"),
        _count(Ticket.stage == "voided").label("voided"),
        sa.func.count(Ticket.closed_at).label("closed"),
        _count(sa.and_(Ticket.closed_at.is_not(None), Ticket.overdue.is_(False))).label("closed_on_time"),
        _count(Ticket.overdue.is_(True)).label("overdue"),
        _count(Ticket.escalation_level > 0).label("escalated"),
        _count(Ticket.rework_count > 0).label("reworked"),
        sa.func.count(Ticket.feedback_at).label("reached_feedback"),
        _count(Ticket.extension_count > 0).label("extended"),
        sa.func.count(Ticket.rating).label("rated"),
        sa.func.avg(sa.cast(Ticket.rating, sa.Float)).label("satisfaction"),
        *(sa.func.avg(_seconds(dialect, a, b)).label(f"mean_s_{name}") for name, a, b in STAGE_SPANS),
    ).group_by(group, bucket).order_by(group, bucket)
    if since is not None:
        query = query.where(Ticket.opened_at >= since)
    if until is not None:
        query = query.where(Ticket.opened_at < until)
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(Ticket, name) == value)
    return [_row(r) for r in session.execute(query).mappings()]


def _row(r: Any) -> dict[str, Any]:
    """One result row as the API's columns, with the rates derived from its counts."""
    def rate(part: str, whole: str) -> float | None:
        return round(r[part] / r[whole], 4) if r[whole] else None

    row = {k: r[k] for k in COLUMNS if k in r}
    row |= {"closing_rate": rate("closed", "registered"), "on_time_rate": rate("closed_on_time", "closed"),
            "rework_rate": rate("reworked", "reached_feedback"), "extension_rate": rate("extended", "registered"),
            "satisfaction": round(float(r["satisfaction"]), 3) if r["satisfaction"] is not None else None}
    for name, _, _ in STAGE_SPANS:
        value = r[f"mean_s_{name}"]
        row[f"mean_s_{name}"] = round(float(value), 1) if value is not None else None
    return {k: row.get(k) for k in COLUMNS}


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
