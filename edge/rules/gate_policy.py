"""Whether a recognised courier may come in through a gate: the site's policy, decided on the edge.

The decision is pure (policy, uniform, local time) so the courier rule can make it per track and
log it; opening the gate is the delivery stage's job (:mod:`~gridwatch.edge.delivery.gate`).
"""

from __future__ import annotations

from datetime import datetime

from gridwatch.broker.zones import GatePolicy
from gridwatch.edge.rules.timewindows import in_windows

ALLOWED = "allowed"


def entry_decision(policy: GatePolicy, uniform_id: str, at: datetime) -> str:
    """``allowed``, or why not: ``company_not_allowed`` or ``outside_hours``."""
    if uniform_id not in policy.allowed:
        return "company_not_allowed"
    if not in_windows(policy.windows, at):
        return "outside_hours"
    return ALLOWED
