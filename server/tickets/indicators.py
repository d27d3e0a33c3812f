"""Indicators of the closed loop per grid / community / street / category / period.

结案率 closed ÷ registered · 按期处置率 closed without any breached limit ÷ closed · 返工率 reworked ÷
reached feedback · 延期率 extended ÷ registered · 满意度 mean rating · mean time per stage. The
ticket columns they read (first time in each stage, rework/extension counts, overdue, rating) are
written in the same transaction as the audit-trail entry that changes them, so an indicator is an
aggregate over one indexed table rather than a replay of millions of audit rows.

Every indicator is a ratio of sums (counts, rating sum, seconds and count per stage span), and sums
add up: on PostgreSQL, whole local days come from ``ticket_day_stats`` (the same sums per day,
community, street, district, type and category, kept by a trigger at each commit, migration 0006)
and only the partial days at the edges of [since, until) from the tickets. A district-wide month is
then a few thousand summary rows instead of ~80,000 tickets (at a million a year), which aggregated
in 60–90 ms on the shared machine here. Grid-level questions, which the summary cannot answer, and
SQLite read the tickets (an index-only scan of ``ix_tickets_opened_at`` on PostgreSQL).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.models import Ticket, TicketDayStats

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
# The sums every indicator is made of; ticket_day_stats has one column for each.
SUMS = ("tickets", "registered", "voided", "closed", "closed_on_time", "overdue", "escalated", "reworked",
        "reached_feedback", "extended", "rated", "rating_sum",
        *(f"{kind}_{name}" for name, _, _ in STAGE_SPANS for kind in ("s", "n")))
# ticket_day_stats buckets by this local day (UTC+8, the calendar's Asia/Shanghai, which has no DST).
STATS_UTC_OFFSET_H = 8
STATS = TicketDayStats.__table__
STATS_GROUPS = {"community": STATS.c.community_id, "street": STATS.c.street_id, "district": STATS.c.district_id,
                "category": STATS.c.subcategory, "type": STATS.c.type}
STATS_FILTERS = {"community_id", "street_id", "district_id", "type", "subcategory"}


def _seconds(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, and averaging
        # numerics over a district-month of tickets cost a third of the query.
        return sa.func.date_part("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


_FORMATS = {"day": ("YYYY-MM-DD", "%Y-%m-%d"), "month": ("YYYY-MM", "%Y-%m")}


def _bucket(dialect: str, period: Period, utc_offset_h: int) -> Any:
    if period == "none":
        return sa.literal("all")
    fmt = _FORMATS[period]
    if dialect == "postgresql":
        # As a timestamp without time zone, so the session's TimeZone setting cannot move the day.
        local = sa.func.timezone("UTC", Ticket.opened_at) + sa.text(f"interval '{utc_offset_h} hours'")
        return sa.func.to_char(local, fmt[0])
    return sa.func.strftime(fmt[1], Ticket.opened_at, f"{utc_offset_h:+d} hours")


def _count(condition: Any) -> Any:
    """Rows meeting ``condition``: an aggregate FILTER, cheaper per row than SUM(CASE …)."""
    return sa.func.count().filter(condition)


def _ticket_sums(dialect: str) -> list[Any]:
    """The SUMS over tickets (the definitions ticket_day_stats's trigger repeats in SQL)."""
    spans = []
    for name, start, end in STAGE_SPANS:
        # n by a FILTER on both stamps, not count(seconds): PostgreSQL would compute the seconds twice.
        spans += [sa.func.sum(_seconds(dialect, start, end)).label(f"s_{name}"),
                  _count(sa.and_(start.is_not(None), end.is_not(None))).label(f"n_{name}")]
    return [
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
        sa.func.sum(Ticket.rating).label("rating_sum"),
        *spans,
    ]


def _local_midnight(at: datetime, utc_offset_h: int, *, up: bool) -> datetime:
    """The local midnight at or after (``up``) / at or before ``at``, as an aware UTC datetime."""
    offset = timedelta(hours=utc_offset_h)
    local = at.astimezone(UTC) + offset
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if up and midnight < local:
        midnight += timedelta(days=1)
    return midnight - offset


def compute(session: Session, *, group_by: GroupBy = "none", period: Period = "none",
            since: datetime | None = None, until: datetime | None = None, utc_offset_h: int = 8,
            use_summary: bool = True, **filters: str | None) -> list[dict[str, Any]]:
    """One row per (group, period) of tickets opened in [since, until); ``filters`` are ticket
    column = value (grid_id, community_id, street_id, district_id, type, subcategory).
    ``use_summary=False`` reads the tickets only: the reference the summary is tested against."""
    dialect = session.get_bind().dialect.name
    filters = {name: value for name, value in filters.items() if value is not None}
    summary = (use_summary and dialect == "postgresql" and utc_offset_h == STATS_UTC_OFFSET_H
               and group_by in (*STATS_GROUPS, "none") and set(filters) <= STATS_FILTERS)
    # Tickets read directly: all of [since, until), or with the summary only what is outside its whole days.
    ranges: list[tuple[datetime | None, datetime | None]] = [(since, until)]
    parts = []
    if summary:
        first = _local_midnight(since, utc_offset_h, up=True) if since is not None else None
        end = _local_midnight(until, utc_offset_h, up=False) if until is not None else None
        if first is None or end is None or first < end:
            ranges = [r for r in ((since, first), (end, until)) if r[0] is not None or r[1] is not None]
            ranges = [(a, b) for a, b in ranges if a is None or b is None or a < b]
            parts.append(_stats_part(group_by, period, first, end, utc_offset_h, filters))
    group = GROUP_COLUMNS[group_by] if group_by != "none" else sa.literal("all")
    bucket = _bucket(dialect, period, utc_offset_h)
    for start, stop in ranges:
        query = sa.select(group.label("group"), bucket.label("period"), *_ticket_sums(dialect))
        if start is not None:
            query = query.where(Ticket.opened_at >= start)
        if stop is not None:
            query = query.where(Ticket.opened_at < stop)
        for name, value in filters.items():
            query = query.where(getattr(Ticket, name) == value)
        parts.append(query.group_by(group, bucket))
    union = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    # Counts summed as bigint: PostgreSQL's sum(bigint) is numeric, a Decimal per value in Python.
    totals = [(sa.func.sum(union.c[name]) if name.startswith("s_") else sa.cast(sa.func.sum(union.c[name]),
                                                                                 sa.BigInteger)).label(name)
              for name in SUMS]
    query = (sa.select(union.c.group, union.c.period, *totals)
             .group_by(union.c.group, union.c.period).order_by(union.c.group, union.c.period))
    result = session.execute(query)
    names = list(result.keys())
    return [_row(dict(zip(names, values, strict=True))) for values in result.all()]


def _stats_part(group_by: GroupBy, period: Period, first: datetime | None, end: datetime | None,
                utc_offset_h: int, filters: dict[str, str]) -> Any:
    """The SUMS of whole local days [first, end) from ticket_day_stats, per (group, period)."""
    group = sa.func.nullif(STATS_GROUPS[group_by], "") if group_by != "none" else sa.literal("all")
    bucket = sa.func.to_char(STATS.c.day, _FORMATS[period][0]) if period != "none" else sa.literal("all")
    query = sa.select(group.label("group"), bucket.label("period"), *(STATS.c[name] for name in SUMS))
    query = query.where(STATS.c.tickets > 0)  # a bucket whose tickets all moved away or were deleted
    if first is not None:
        query = query.where(STATS.c.day >= (first + timedelta(hours=utc_offset_h)).date())
    if end is not None:
        query = query.where(STATS.c.day < (end + timedelta(hours=utc_offset_h)).date())
    for name, value in filters.items():
        query = query.where(STATS.c[name] == value)
    return query


_OUT_COUNTS = COLUMNS[2:12]  # tickets … rated
_SPAN_KEYS = tuple((f"s_{name}", f"n_{name}", f"mean_s_{name}") for name, _, _ in STAGE_SPANS)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _row(m: dict[str, Any]) -> dict[str, Any]:
    """One row of SUMS as the API's columns, with the rates and means derived from the sums. Plain
    dicts and no loops over names that are not needed: a week by grid has 1,188 rows."""
    row = {"group": m["group"], "period": m["period"]}
    for name in _OUT_COUNTS:
        row[name] = m[name] or 0
    row["closing_rate"] = _rate(row["closed"], row["registered"])
    row["on_time_rate"] = _rate(row["closed_on_time"], row["closed"])
    row["rework_rate"] = _rate(row["reworked"], m["reached_feedback"] or 0)
    row["extension_rate"] = _rate(row["extended"], row["registered"])
    row["satisfaction"] = round((m["rating_sum"] or 0) / row["rated"], 3) if row["rated"] else None
    for total, count, mean in _SPAN_KEYS:
        row[mean] = round(m[total] / m[count], 1) if m[count] else None
    return row


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
