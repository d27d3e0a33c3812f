"""Local time windows 'HH:MM-HH:MM' (e.g. loitering only at night, couriers only by day)."""

from __future__ import annotations

from datetime import datetime


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_windows(windows: tuple[str, ...], at: datetime) -> bool:
    """True when ``at`` (in the node's local time) falls in any window; no windows means always.

    A window whose end is before its start crosses midnight: '22:00-06:00' is the night.
    """
    if not windows:
        return True
    local = at.astimezone()
    now = local.hour * 60 + local.minute
    for window in windows:
        start, end = (_minutes(part) for part in window.split("-"))
        if (start <= now < end) if start <= end else (now >= start or now < end):
            return True
    return False
