"""The category table (事部件分类表): event type → category, 立案条件, time limits, 结案条件.

It is versioned configuration: every save is a new row in ``category_tables`` and every ticket
records the version it was opened under, so changing a time limit never rewrites history. The
packaged ``config/categories.yaml`` is version 0, in force until the first save.
"""

from __future__ import annotations

import functools
import threading
from datetime import datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from gridwatch.broker.contract import Event, EventType
from gridwatch.server.models import CategoryTableRecord
from gridwatch.server.tickets.calendar import TimeLimit, WorkCalendar
from gridwatch.server.tickets.stages import CLOCKED_STAGES

SAMPLE_PATH = Path(__file__).resolve().parents[1] / "config" / "categories.yaml"
# Event types that reveal who is where and when, or where the cameras are blind: never readable by
# anonymous Open311 clients, whatever an admin saves (a table marking one public is refused).
NEVER_PUBLIC = frozenset({EventType.LOITERING, EventType.COURIER_ENTRY, EventType.COURIER_OVERSTAY,
                          EventType.CAMERA_OFFLINE, EventType.CAMERA_TAMPER, EventType.EDGE_OUTBOX_OVERFLOW})
ESCALATION_LEVELS = ("grid", "community", "street", "district")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Closing(StrEnum):
    CAMERA_CLEAR = "camera_clear"
    HANDLER_PHOTO = "handler_photo"
    SUPERVISOR = "supervisor"


class Registration(_Config):
    """立案条件: all given conditions must hold for the system to register the ticket."""

    min_duration_s: float = Field(0, ge=0)
    hours: tuple[time, time] | None = Field(None, description="local window; may wrap midnight")

    def met(self, event: Event, zone: Any) -> bool:
        lasted = max(float(event.attributes.get("dwell_s", 0) or 0),
                     (event.observed_at - event.started_at).total_seconds())
        if lasted < self.min_duration_s:
            return False
        if self.hours is None:
            return True
        start, end = self.hours
        now = event.observed_at.astimezone(zone).time()
        return start <= now < end if start < end else (now >= start or now < end)


class EscalationPolicy(_Config):
    warn_before_fraction: float = Field(0.2, ge=0, lt=1)
    levels: list[str] = Field(default_factory=lambda: list(ESCALATION_LEVELS[1:]))
    every: TimeLimit | None = Field(None, description="between escalations; default the stage limit")

    @model_validator(mode="after")
    def _levels_go_up(self) -> EscalationPolicy:
        ranks = [ESCALATION_LEVELS.index(level) for level in self.levels if level in ESCALATION_LEVELS]
        if len(ranks) != len(self.levels) or ranks != sorted(set(ranks)) or (ranks and ranks[0] == 0):
            raise ValueError(f"levels must be an ascending subset of {ESCALATION_LEVELS[1:]}")
        return self


class Category(_Config):
    event_type: EventType
    category: str = Field(min_length=1, description="大类")
    subcategory: str = Field(min_length=1, description="小类")
    responsible_unit: str = Field(min_length=1, description="a department id of the registry")
    registration: Registration = Registration()
    time_limits: dict[str, TimeLimit] = Field(default_factory=dict)
    escalation: str = "standard"
    closing: Closing = Closing.SUPERVISOR
    fingerprint_object: bool = False
    group_by_grid: bool = False
    group_interval_s: float = Field(0, ge=0)
    group_wait_s: float = Field(0, ge=0, description="a new grid group's ticket is registered no sooner than "
                                "this after it opened, so a burst across cameras lands in it first")
    public: bool = Field(False, description="anonymous Open311 clients may read these tickets when the site "
                         "turns public reading on; never for security and camera-health types")

    @model_validator(mode="after")
    def _security_types_stay_private(self) -> Category:
        # A public loitering or camera-offline list would tell anyone where people linger and which
        # cameras are blind; refuse it here so no saved table can publish it.
        if self.public and (self.event_type in NEVER_PUBLIC or self.event_type.value.startswith("camera_")):
            raise ValueError(f"public: {self.event_type.value} is a security event type and cannot be public")
        return self

    @model_validator(mode="after")
    def _group_wait_needs_grouping(self) -> Category:
        if self.group_wait_s > 0 and not self.group_by_grid:
            raise ValueError(f"group_wait_s: {self.event_type.value} waits for a group but group_by_grid is off")
        if self.group_wait_s > self.group_interval_s:
            raise ValueError(f"group_wait_s: {self.group_wait_s:g} s is longer than group_interval_s "
                             f"({self.group_interval_s:g} s): incidents arriving late in the wait could not join")
        return self


class CategoryTable(_Config):
    calendar: WorkCalendar = WorkCalendar()
    escalation_policies: dict[str, EscalationPolicy]
    categories: list[Category]

    @model_validator(mode="after")
    def _complete(self) -> CategoryTable:
        types = [c.event_type for c in self.categories]
        missing = [t.value for t in EventType if t not in types]
        if missing:
            raise ValueError(f"categories: no entry for event type(s) {', '.join(missing)}")
        if len(set(types)) != len(types):
            raise ValueError("categories: an event type appears twice")
        for c in self.categories:
            if c.escalation not in self.escalation_policies:
                raise ValueError(f"categories.{c.event_type}: unknown escalation policy {c.escalation!r}")
            unknown = set(c.time_limits) - set(CLOCKED_STAGES)
            if unknown:
                raise ValueError(f"categories.{c.event_type}.time_limits: unknown stage(s) {sorted(unknown)}; "
                                 f"stages with a clock: {', '.join(CLOCKED_STAGES)}")
        return self

    @functools.cached_property
    def _by_type(self) -> dict[str, Category]:
        # Ingest asks once per event: a dict, not a scan of the list (the table is frozen).
        return {c.event_type.value: c for c in self.categories}

    def for_type(self, event_type: str) -> Category:
        return self._by_type[event_type]

    def policy(self, category: Category) -> EscalationPolicy:
        return self.escalation_policies[category.escalation]


def load_sample() -> CategoryTable:
    return CategoryTable.model_validate(yaml.safe_load(SAMPLE_PATH.read_text(encoding="utf-8")))


class CategoryStore:
    """The active (highest) version, cached; one cheap query per call notices another replica's save."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[int, CategoryTable] | None = None

    def current(self, session: Session) -> tuple[int, CategoryTable]:
        """The active version and table; version 0 is the packaged sample, used until one is saved."""
        version = session.scalar(sa.select(sa.func.max(CategoryTableRecord.version))) or 0
        with self._lock:
            if self._cached is not None and self._cached[0] == version:
                return self._cached
        if version == 0:
            table = load_sample()
        else:
            content = session.scalar(
                sa.select(CategoryTableRecord.content).where(CategoryTableRecord.version == version))
            table = CategoryTable.model_validate(content)
        with self._lock:
            self._cached = (version, table)
        return version, table

    def save(self, session: Session, table: CategoryTable, author: str, now: datetime) -> int:
        """Store ``table`` as the next version and commit; returns the version number."""
        latest = session.scalar(sa.select(sa.func.max(CategoryTableRecord.version))) or 0
        session.add(CategoryTableRecord(version=latest + 1, content=table.model_dump(mode="json"),
                                        author=author, created_at=now))
        session.commit()
        return latest + 1
