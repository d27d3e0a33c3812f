"""The stages a ticket passes through and the roles that move it: the vocabulary of the ticket engine.

Kept apart from :mod:`~gridwatch.server.tickets.lifecycle` (the state machine) because the category
table, the SLA clock, ingest and retention all need the names but none of the machine's rules.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    REPORTED = "reported"
    REGISTERED = "registered"
    VOIDED = "voided"
    DISPATCHED = "dispatched"
    HANDLING = "handling"
    FEEDBACK = "feedback"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"
    PARKED = "parked"


# Stages in which a repeat of the situation joins the ticket; after these it opens a new one.
OPEN_STAGES = (Stage.REPORTED, Stage.REGISTERED, Stage.DISPATCHED, Stage.HANDLING, Stage.FEEDBACK, Stage.PARKED)
# Stages a category can give a time limit (time to leave the stage).
CLOCKED_STAGES = (Stage.REGISTERED, Stage.DISPATCHED, Stage.HANDLING, Stage.FEEDBACK)
# First time a ticket entered a stage: kept as a column, the basis of per-stage indicators.
STAMPED = {Stage.REGISTERED: "registered_at", Stage.DISPATCHED: "dispatched_at", Stage.HANDLING: "handling_at",
           Stage.FEEDBACK: "feedback_at", Stage.VERIFIED: "verified_at", Stage.CLOSED: "closed_at"}


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    SECURITY = "security"
    GRID_WORKER = "grid_worker"
    DEPARTMENT = "department"
    SYSTEM = "system"  # the server itself; never accepted from a request


HUMAN_ROLES = tuple(r for r in Role if r is not Role.SYSTEM)
MANAGERS = frozenset({Role.SUPERVISOR, Role.ADMIN})
HANDLERS = frozenset({Role.GRID_WORKER, Role.DEPARTMENT})
