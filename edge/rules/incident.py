"""What a rule reports: one phase of one incident, on the source clock (seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridwatch.broker.contract import EventType, Phase
from gridwatch.edge.perception.track import Track


@dataclass(frozen=True)
class RuleEvent:
    type: EventType
    phase: Phase
    zone_id: str
    incident_id: str
    track: Track | None
    started_s: float
    observed_s: float
    ended_s: float | None = None
    attributes: dict[str, float | int | str | bool] = field(default_factory=dict)
