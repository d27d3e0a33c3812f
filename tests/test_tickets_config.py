"""The working calendar, the category table and the registry formats, as configured."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gridwatch.server.registry import grids
from gridwatch.server.tickets import categories
from gridwatch.server.tickets.calendar import TimeLimit

SH = ZoneInfo("Asia/Shanghai")
CAL = categories.load_sample().calendar


def due(start: datetime, limit: float, kind: str) -> datetime:
    return CAL.add(start, TimeLimit(limit=limit, type=kind)).astimezone(SH)


def test_working_hours_skip_lunch_nights_weekends_and_holidays() -> None:
    friday_11h = datetime(2025, 3, 7, 11, 0, tzinfo=SH)
    assert due(friday_11h, 2, "working_hours") == datetime(2025, 3, 7, 14, 30, tzinfo=SH)  # lunch 12:00-13:30
    assert due(friday_11h, 6, "working_hours") == datetime(2025, 3, 10, 9, 30, tzinfo=SH)  # over the weekend
    before_labour_day = datetime(2025, 4, 30, 17, 0, tzinfo=SH)  # May 1-5 off
    assert due(before_labour_day, 1, "working_hours") == datetime(2025, 5, 6, 9, 0, tzinfo=SH)
    # 调休: Sunday 27 April 2025 is a working day.
    assert due(datetime(2025, 4, 26, 9, 0, tzinfo=SH), 1, "working_days") == datetime(2025, 4, 27, 17, 30, tzinfo=SH)
    assert due(friday_11h, 1, "working_days") == datetime(2025, 3, 10, 17, 30, tzinfo=SH)
    assert due(friday_11h, 1, "natural_days") == datetime(2025, 3, 8, 11, 0, tzinfo=SH)
    assert due(friday_11h, 30, "urgent_minutes") == datetime(2025, 3, 7, 11, 30, tzinfo=SH)
    with pytest.raises(ValidationError, match="whole days"):
        TimeLimit(limit=1.5, type="working_days")


def test_the_category_table_must_cover_every_event_type_and_name_real_policies() -> None:
    table = categories.load_sample().model_dump(mode="json")
    table["categories"] = table["categories"][1:]
    with pytest.raises(ValidationError, match="no entry for event type"):
        categories.CategoryTable.model_validate(table)
    table = categories.load_sample().model_dump(mode="json")
    table["categories"][0]["escalation"] = "nobody"
    with pytest.raises(ValidationError, match="unknown escalation policy"):
        categories.CategoryTable.model_validate(table)
    table = categories.load_sample().model_dump(mode="json")
    table["categories"][0]["time_limits"]["closed"] = {"limit": 1, "type": "natural_days"}
    with pytest.raises(ValidationError, match="unknown stage"):
        categories.CategoryTable.model_validate(table)


def test_group_wait_needs_grid_grouping_and_fits_in_the_group_interval() -> None:
    table = categories.load_sample().model_dump(mode="json")
    loitering = next(c for c in table["categories"] if c["event_type"] == "loitering")
    loitering["group_wait_s"] = 30
    with pytest.raises(ValidationError, match="group_wait_s: loitering waits for a group but group_by_grid is off"):
        categories.CategoryTable.model_validate(table)
    table = categories.load_sample().model_dump(mode="json")
    fire = next(c for c in table["categories"] if c["event_type"] == "fire_lane_blocked")
    fire["group_wait_s"] = 900
    with pytest.raises(ValidationError, match=r"group_wait_s: 900 s is longer than group_interval_s \(600 s\)"):
        categories.CategoryTable.model_validate(table)
    fire["group_wait_s"] = 600
    assert categories.CategoryTable.model_validate(table).for_type("fire_lane_blocked").group_wait_s == 600


def test_registry_round_trips_through_csv() -> None:
    sample = grids.load_sample()
    text = grids.to_csv(sample)
    assert text.splitlines()[0] == ",".join(grids.CSV_COLUMNS)
    assert grids.from_csv(text) == sample
    without_community = "\n".join(line for line in text.splitlines() if not line.startswith("community"))
    with pytest.raises(ValueError, match="parent 'comm-xingfu'"):
        grids.from_csv(without_community)
    with pytest.raises(ValidationError, match="listed twice"):
        grids.RegistryDoc.model_validate({**sample.model_dump(), "departments": [
            {"id": "grid-xingfu-01", "name": "dup"}]})
