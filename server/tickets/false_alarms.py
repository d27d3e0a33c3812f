"""False alarms (误报): why a person says a camera's ticket was wrong, and how often each rule, camera or
zone is wrong per week, so a supervisor sees which camera needs its zone or threshold changed.

A ticket is marked by the lifecycle's ``mark_false_alarm`` action (the person who verifies, closes or
voids it), which writes ``false_alarm_reason`` and ``false_alarm_at`` on the ticket in the same
transaction as its audit-trail entry. The rate is false alarms ÷ camera tickets opened in the week:
it is measured from ticket outcomes, not from the model's confidence, which is what turns a vendor's
accuracy claim into a number for one compound. A ticket nobody has reviewed yet counts as not false,
so a week's rate can only rise as people catch up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.models import Ticket

# The fixed reasons a guard picks from (the console shows each in words); "other" needs a free-text reason.
REASONS = ("nothing_there", "misrecognised", "zone_wrong", "authorised", "camera_fault", "weather_light", "other")
FalseAlarmReason = Literal[REASONS]  # type: ignore[valid-type]
GroupBy = Literal["rule", "camera", "zone"]


def _week(dialect: str, utc_offset_h: int) -> Any:
    """The local Monday (YYYY-MM-DD) of the week a ticket opened in."""
    if dialect == "postgresql":
        local = sa.func.timezone("UTC", Ticket.opened_at) + sa.text(f"interval '{utc_offset_h} hours'")
        return sa.func.to_char(sa.func.date_trunc("week", local), "YYYY-MM-DD")
    # 'weekday 0' moves forward to the Sunday (or stays on it); six days back is that week's Monday.
    return sa.func.date(Ticket.opened_at, f"{utc_offset_h:+d} hours", "weekday 0", "-6 days")


def _group(by: GroupBy) -> Any:
    if by == "rule":
        return Ticket.type
    if by == "camera":
        return Ticket.camera_id
    return Ticket.camera_id + "/" + Ticket.zone_id  # zone ids are unique per camera only


def rates(session: Session, *, by: GroupBy = "camera", since: datetime | None = None,
          until: datetime | None = None, utc_offset_h: int = 8) -> list[dict[str, Any]]:
    """One row per (group, week) of camera tickets opened in [since, until): ``tickets``,
    ``false_alarms``, ``false_alarm_rate`` and the count per reason, ordered by week then group."""
    dialect = session.get_bind().dialect.name
    group = _group(by).label("group")
    week = _week(dialect, utc_offset_h).label("week")
    marked = Ticket.false_alarm_reason.is_not(None)
    query = (sa.select(group, week, sa.func.count().label("tickets"),
                       sa.func.count().filter(marked).label("false_alarms"),
                       *(sa.func.count().filter(Ticket.false_alarm_reason == r).label(r) for r in REASONS))
             .where(Ticket.source == "camera").group_by(group, week).order_by(week, group))
    if since is not None:
        query = query.where(Ticket.opened_at >= since)
    if until is not None:
        query = query.where(Ticket.opened_at < until)
    out = []
    for row in session.execute(query).mappings():
        tickets, false_alarms = int(row["tickets"]), int(row["false_alarms"])
        out.append({"group": row["group"], "week": str(row["week"]), "tickets": tickets,
                    "false_alarms": false_alarms, "false_alarm_rate": round(false_alarms / tickets, 4),
                    "reasons": {r: int(row[r]) for r in REASONS if row[r]}})
    return out
