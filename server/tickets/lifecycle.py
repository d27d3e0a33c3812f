"""The ticket lifecycle (GB/T 30428 closed loop) as a state machine checked against role and state.

reported → registered (立案) or voided (作废) → dispatched (派遣, or claimed 抢单) → handling (处置)
→ feedback (反馈) → verified (核查) or back to handling (返工) → closed (结案) → evaluated (评价);
plus return to sender (回退), extension with approval (延期), parking (挂账), and marking a camera's
ticket a false alarm (误报) with a reason, which also voids it if nobody had registered it yet.

:func:`plan` is pure: given a ticket, a request and the category, it returns the column changes and
the audit entry, or raises :class:`TransitionError`. :func:`apply` is the API path: optimistic
locking by ``version`` (compare-and-set, no lock held while a person decides). Ingest applies the
system's own transitions (auto-register, auto-void, auto-verify) through :func:`plan` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from gridwatch.server.models import Ticket, TicketTransition
from gridwatch.server.registry import grids
from gridwatch.server.tickets import sla
from gridwatch.server.tickets.calendar import TimeLimit
from gridwatch.server.tickets.categories import Category, CategoryTable, Closing
from gridwatch.server.tickets.false_alarms import REASONS, FalseAlarmReason
from gridwatch.server.tickets.stages import (
    HANDLERS,
    HUMAN_ROLES,
    MANAGERS,
    STAMPED,
    Role,
    Stage,
)


@dataclass(frozen=True)
class Rule:
    sources: frozenset[Stage]
    target: Stage | None  # None: stays in its stage (extensions) or returns (unpark)
    roles: frozenset[Role]
    assignee_only: bool = False
    needs: tuple[str, ...] = ()


RULES: dict[str, Rule] = {
    "register": Rule(frozenset({Stage.REPORTED}), Stage.REGISTERED, MANAGERS | {Role.SECURITY, Role.SYSTEM}),
    "void": Rule(frozenset({Stage.REPORTED}), Stage.VOIDED, MANAGERS | {Role.SECURITY, Role.SYSTEM}, needs=("reason",)),
    "dispatch": Rule(frozenset({Stage.REGISTERED}), Stage.DISPATCHED, MANAGERS, needs=("assignee_kind", "assignee_id")),
    "claim": Rule(frozenset({Stage.REGISTERED}), Stage.DISPATCHED, frozenset({Role.GRID_WORKER})),
    "return": Rule(frozenset({Stage.DISPATCHED}), Stage.REGISTERED, HANDLERS, assignee_only=True, needs=("reason",)),
    "accept": Rule(frozenset({Stage.DISPATCHED}), Stage.HANDLING, HANDLERS, assignee_only=True),
    "feedback": Rule(frozenset({Stage.HANDLING}), Stage.FEEDBACK, HANDLERS, assignee_only=True, needs=("result",)),
    "verify": Rule(frozenset({Stage.FEEDBACK}), Stage.VERIFIED, MANAGERS | {Role.SYSTEM}),
    "reject": Rule(frozenset({Stage.FEEDBACK}), Stage.HANDLING, MANAGERS, needs=("reason",)),
    "close": Rule(frozenset({Stage.VERIFIED}), Stage.CLOSED, MANAGERS),
    "evaluate": Rule(frozenset({Stage.CLOSED}), Stage.EVALUATED, MANAGERS, needs=("rating",)),
    "request_extension": Rule(frozenset({Stage.DISPATCHED, Stage.HANDLING}), None, HANDLERS, assignee_only=True,
                              needs=("reason", "extension")),
    "approve_extension": Rule(frozenset({Stage.DISPATCHED, Stage.HANDLING}), None, MANAGERS),
    "deny_extension": Rule(frozenset({Stage.DISPATCHED, Stage.HANDLING}), None, MANAGERS, needs=("reason",)),
    "park": Rule(frozenset({Stage.REGISTERED, Stage.DISPATCHED, Stage.HANDLING}), Stage.PARKED, MANAGERS,
                 needs=("reason",)),
    "unpark": Rule(frozenset({Stage.PARKED}), None, MANAGERS),
    # Whoever verifies, closes or voids a ticket may say it was a false alarm; from reported it voids it too.
    "mark_false_alarm": Rule(frozenset({Stage.REPORTED, Stage.VOIDED, Stage.FEEDBACK, Stage.VERIFIED, Stage.CLOSED,
                                        Stage.EVALUATED}), None, MANAGERS | {Role.SECURITY},
                             needs=("false_alarm_reason",)),
}


class TransitionBody(BaseModel):
    """One person's action on a ticket as the client sends it; who acts is the login's, not the body's.
    ``expected_version`` is the version the person saw (409 if the ticket changed since)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal[tuple(RULES)]  # type: ignore[valid-type]
    expected_version: int | None = Field(None, ge=1)
    reason: str | None = Field(None, max_length=2000)
    assignee_kind: Literal["worker", "department"] | None = None
    assignee_id: str | None = Field(None, max_length=64)
    result: str | None = Field(None, max_length=2000)
    photo_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    rating: int | None = Field(None, ge=1, le=5)
    extension: TimeLimit | None = None
    false_alarm_reason: FalseAlarmReason | None = None  # "other" needs ``reason`` in words


class TransitionRequest(TransitionBody):
    """The body plus who acts: the logged-in account's registry person id, role and department."""

    actor: str = Field(min_length=1, max_length=64)
    role: Literal[HUMAN_ROLES]  # type: ignore[valid-type]
    unit: str | None = Field(None, max_length=64, description="the actor's department, for role department")


class TransitionError(Exception):
    """Refused: ``status`` is the HTTP status (403 role, 409 state or version, 422 missing data)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Plan:
    values: dict[str, Any]
    audit: dict[str, Any]
    guards: dict[str, Any] = field(default_factory=dict)  # must still hold when the change is written


class TicketState(Protocol):
    """The columns :func:`plan` reads: an ORM ``Ticket`` has them, and so does ingest's plain row, which
    skips the ORM's tracking at thousands of events/s."""

    type: str
    stage: str
    open_incidents: int
    due_at: datetime | None
    rework_count: int
    extension_count: int
    extension_request: dict[str, Any] | None
    false_alarm_reason: str | None
    source: str


def plan(ticket: TicketState, req: TransitionRequest | SystemAction, category: Category, table: CategoryTable,
         now: datetime) -> Plan:
    """Check ``req`` against the rules and the ticket; return what to write."""
    rule = RULES[req.action]
    stage = Stage(ticket.stage)
    role = Role(req.role)
    if role not in rule.roles:
        raise TransitionError(403, "role_not_allowed", f"{req.role} may not {req.action}; "
                              f"allowed: {', '.join(sorted(r.value for r in rule.roles))}")
    if stage not in rule.sources:
        raise TransitionError(409, "wrong_stage", f"cannot {req.action} a ticket in stage {stage.value}; "
                              f"only from {', '.join(sorted(s.value for s in rule.sources))}")
    missing = [name for name in rule.needs if getattr(req, name, None) in (None, "")]
    if missing:
        raise TransitionError(422, "missing_field", f"{req.action} needs {', '.join(missing)}")
    if rule.assignee_only:
        _check_assignee(ticket, req)
    details: dict[str, Any] = {k: getattr(req, k) for k in ("reason", "result", "photo_sha256", "rating",
                                                          "false_alarm_reason")
                               if getattr(req, k, None) is not None}
    values: dict[str, Any] = {}
    guards: dict[str, Any] = {}
    target = rule.target
    action = req.action
    if action == "dispatch":
        values |= {"assignee_kind": req.assignee_kind, "assignee_id": req.assignee_id}
        details |= {"assignee_kind": req.assignee_kind, "assignee_id": req.assignee_id}
    elif action == "claim":
        values |= {"assignee_kind": "worker", "assignee_id": req.actor}
        details |= {"assignee_kind": "worker", "assignee_id": req.actor}
    elif action == "return":
        values |= {"assignee_kind": None, "assignee_id": None}
    elif action == "feedback" and category.closing is Closing.HANDLER_PHOTO and not req.photo_sha256:
        raise TransitionError(422, "missing_field", "this category closes on a handler photo: feedback needs "
                              "photo_sha256 (upload it to /api/snapshots first)")
    elif action == "verify" and category.closing is Closing.CAMERA_CLEAR:
        if ticket.open_incidents > 0:
            raise TransitionError(409, "camera_not_clear", f"a camera still reports this {ticket.type} "
                                  f"({ticket.open_incidents} open incident(s)): it verifies when the camera "
                                  "reports the situation ended")
        guards["open_incidents"] = 0
    elif action == "reject":
        values["rework_count"] = ticket.rework_count + 1
        details["rework"] = ticket.rework_count + 1
    elif action == "request_extension":
        if ticket.extension_request is not None:
            raise TransitionError(409, "extension_pending", "an extension request is already pending")
        request = {"by": req.actor, "reason": req.reason, "extension": req.extension.model_dump(mode="json"),
                   "at": now.isoformat()}
        values["extension_request"] = request
        details["extension"] = request["extension"]
    elif action in ("approve_extension", "deny_extension"):
        if ticket.extension_request is None:
            raise TransitionError(409, "no_extension_request", "no extension request is pending")
        values["extension_request"] = None
        details["request"] = ticket.extension_request
        if action == "approve_extension":
            values["extension_count"] = ticket.extension_count + 1
            extra = TimeLimit.model_validate(ticket.extension_request["extension"])
            if ticket.due_at is not None:
                values |= sla.extend(ticket.due_at, extra, category, table, now)
                details["due_at"] = values["due_at"].isoformat()
    elif action == "park":
        values["parked_from"] = stage.value
    elif action == "unpark":
        target = Stage(ticket.parked_from)
        values["parked_from"] = None
    elif action == "mark_false_alarm":
        if ticket.false_alarm_reason is not None:
            raise TransitionError(409, "already_false_alarm", f"already marked a false alarm "
                                  f"({ticket.false_alarm_reason})")
        if ticket.source != "camera":
            raise TransitionError(409, "not_a_camera_ticket", f"a report from {ticket.source} is not a camera's "
                                  "false alarm: void it instead")
        if req.false_alarm_reason == "other" and not req.reason:
            raise TransitionError(422, "missing_field", "a false alarm for another reason needs reason in words")
        values |= {"false_alarm_reason": req.false_alarm_reason, "false_alarm_at": now}
        if stage is Stage.REPORTED:
            target = Stage.VOIDED
    if target is not None:
        values |= {"stage": target.value, "stage_entered_at": now}
        values |= sla.arm(target.value, now, category, table)
        stamp = STAMPED.get(target)
        if stamp and getattr(ticket, stamp) is None:
            values[stamp] = now
        if target is Stage.EVALUATED:
            values["rating"] = req.rating
    values |= {"version": ticket.version + 1, "updated_at": now}
    audit = {"ticket_id": ticket.id, "action": action, "from_stage": stage.value,
             "to_stage": (target or stage).value, "actor": req.actor, "role": role.value, "at": now,
             "version": ticket.version + 1, "details": details}
    return Plan(values, audit, guards)


@dataclass(frozen=True)
class SystemAction:
    """A transition the server makes itself (auto-register, auto-void, auto-verify)."""

    action: str
    reason: str | None = None
    actor: str = "system"
    role: str = Role.SYSTEM.value


def _check_assignee(ticket: Ticket, req: TransitionRequest) -> None:
    ok = (ticket.assignee_kind == "worker" and req.role == Role.GRID_WORKER and req.actor == ticket.assignee_id) or (
        ticket.assignee_kind == "department" and req.role == Role.DEPARTMENT and req.unit == ticket.assignee_id)
    if not ok:
        raise TransitionError(403, "not_assignee", f"only the assignee ({ticket.assignee_kind} "
                              f"{ticket.assignee_id}) may {req.action} this ticket")


def _check_registry(session: Session, ticket: Ticket, req: TransitionRequest) -> None:
    """Checks that need the registry: who may claim, whom one may dispatch to."""
    if req.action == "claim" and not grids.is_member(session, ticket.grid_id, req.actor):
        raise TransitionError(403, "not_grid_worker", f"{req.actor} is not a worker of grid {ticket.grid_id}")
    if req.action == "dispatch":
        kind = "grid" if req.assignee_kind == "worker" else "department"
        known = (grids.is_member(session, ticket.grid_id, req.assignee_id) if kind == "grid"
                 else grids.unit_exists(session, req.assignee_id, "department"))
        if not known:
            where = f"grid {ticket.grid_id}" if kind == "grid" else "the registry's departments"
            raise TransitionError(422, "unknown_assignee", f"{req.assignee_id} is not in {where}")


def apply(session: Session, ticket_id: int, req: TransitionRequest, table: CategoryTable,
          now: datetime) -> TicketTransition:
    """Check and write one transition with optimistic locking; commits; returns the audit entry."""
    ticket = session.get(Ticket, ticket_id, populate_existing=True)
    if ticket is None:
        raise TransitionError(404, "not_found", f"no ticket {ticket_id}")
    if req.expected_version is not None and req.expected_version != ticket.version:
        raise TransitionError(409, "version_conflict", f"ticket {ticket_id} is at version {ticket.version}, "
                              f"not {req.expected_version}: reload it and decide again")
    _check_registry(session, ticket, req)
    change = plan(ticket, req, table.for_type(ticket.type), table, now)
    seen_version = ticket.version
    session.rollback()  # decided on a snapshot; the write below re-checks that nothing moved since
    written = session.execute(
        sa.update(Ticket)
        .where(Ticket.id == ticket_id, Ticket.version == seen_version,
               *(getattr(Ticket, k) == v for k, v in change.guards.items()))
        .values(**change.values)
    ).rowcount
    if written != 1:
        session.rollback()
        raise TransitionError(409, "version_conflict", f"ticket {ticket_id} changed while this {req.action} "
                              "was being decided: reload it and decide again")
    entry = TicketTransition(**change.audit)
    session.add(entry)
    session.commit()
    return entry


def available(session: Session, ticket: Ticket, actor: str, role: str, unit: str | None) -> list[dict[str, Any]]:
    """The actions ``actor`` may take on ``ticket`` now, with the fields each needs (for the console's
    buttons; :func:`apply` still checks everything when one is taken)."""
    if role not in {r.value for r in HUMAN_ROLES}:
        return []
    out = []
    for action, rule in RULES.items():
        if Role(role) not in rule.roles or Stage(ticket.stage) not in rule.sources:
            continue
        req = TransitionRequest(action=action, actor=actor, role=role, unit=unit)
        try:
            if rule.assignee_only:
                _check_assignee(ticket, req)
            if action == "claim" and not grids.is_member(session, ticket.grid_id, actor):
                continue
        except TransitionError:
            continue
        if action in ("approve_extension", "deny_extension") and ticket.extension_request is None:
            continue
        if action == "mark_false_alarm":
            if ticket.false_alarm_reason is not None or ticket.source != "camera":
                continue
            out.append({"action": action, "needs": list(rule.needs), "choices": {"false_alarm_reason": REASONS}})
            continue
        out.append({"action": action, "needs": list(rule.needs)})
    return out
