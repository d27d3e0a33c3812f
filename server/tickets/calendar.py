"""Working-time arithmetic: when does a time limit of "N working hours" or "N working days" end?

Chinese city-management time limits are stated in four time types (urgent minutes, working hours,
working days, natural days) and working time follows the official holiday schedule, including the
adjusted working weekends (调休). The schedule changes every year by State Council notice, so it is
configuration (``calendar:`` in the category table), not a library that needs a release to learn it.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_DAYS_AHEAD = 3660  # a limit that never ends within ten years is a configuration error


class TimeType(StrEnum):
    URGENT_MINUTES = "urgent_minutes"
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"
    NATURAL_DAYS = "natural_days"


class TimeLimit(BaseModel):
    """A stage's time limit, e.g. ``{limit: 2, type: working_hours}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: float = Field(gt=0)
    type: TimeType

    @model_validator(mode="after")
    def _whole_days(self) -> TimeLimit:
        if self.type is TimeType.WORKING_DAYS and self.limit != int(self.limit):
            raise ValueError("working_days limits are whole days")
        return self


class WorkCalendar(BaseModel):
    """Working hours per day (local time), working weekdays, holidays and adjusted working days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "Asia/Shanghai"
    working_hours: list[tuple[time, time]] = Field(
        default_factory=lambda: [(time(8, 30), time(12, 0)), (time(13, 30), time(17, 30))]
    )
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="0 = Monday")
    holidays: list[date] = Field(default_factory=list)
    extra_working_days: list[date] = Field(default_factory=list, description="调休: weekends worked")

    @model_validator(mode="after")
    def _check(self) -> WorkCalendar:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        previous = time(0, 0)
        for start, end in self.working_hours:
            if not previous <= start < end:
                raise ValueError("working_hours must be ordered, non-overlapping (start, end) pairs")
            previous = end
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return day.weekday() in self.weekdays and day not in self.holidays

    def add(self, start: datetime, limit: TimeLimit) -> datetime:
        """The moment ``limit`` after ``start`` ends (aware UTC in, aware datetime out)."""
        if limit.type is TimeType.URGENT_MINUTES:
            return start + timedelta(minutes=limit.limit)
        if limit.type is TimeType.NATURAL_DAYS:
            return start + timedelta(days=limit.limit)
        if limit.type is TimeType.WORKING_HOURS:
            return self._add_working_time(start, timedelta(hours=limit.limit))
        return self._add_working_days(start, int(limit.limit))

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        zone = self.zone
        return [(datetime.combine(day, a, zone), datetime.combine(day, b, zone)) for a, b in self.working_hours]

    def _add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """Count only time inside working intervals of working days."""
        local = start.astimezone(self.zone)
        remaining = amount
        day = local.date()
        for _ in range(MAX_DAYS_AHEAD):
            if self.is_working_day(day):
                for begin, end in self._intervals(day):
                    begin = max(begin, local)
                    if begin >= end:
                        continue
                    if end - begin >= remaining:
                        return begin + remaining
                    remaining -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"a limit of {amount} never ends within {MAX_DAYS_AHEAD} days: check the calendar")

    def _add_working_days(self, start: datetime, days: int) -> datetime:
        """N working days end when the Nth working day after ``start``'s day closes."""
        day = start.astimezone(self.zone).date()
        counted = 0
        for _ in range(MAX_DAYS_AHEAD):
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
                if counted == days:
                    return self._intervals(day)[-1][1]
        raise ValueError(f"{days} working days never end within {MAX_DAYS_AHEAD} days: check the calendar")
