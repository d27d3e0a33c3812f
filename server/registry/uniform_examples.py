"""Uniform examples added in the console: a supervisor takes the person crop of an event and says it
is (positive) or is not (negative) someone in a uniform. The site's whole list for that uniform is
published retained on :func:`gridwatch.broker.topics.uniform_examples_topic`, so every edge node of
the site (now, or whenever it reconnects) refits the profile from the enrolment photos plus these.

Only the crop the edge cut around the tracked person (``attributes.crop_sha256``) is taken: a whole
scene would teach the profile whatever else stood in the picture.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.broker.contract import UniformExample as ExamplePayload
from gridwatch.broker.contract import UniformExamples
from gridwatch.server.models import EventRecord, UniformExample

Label = Literal["positive", "negative"]


class ExampleError(ValueError):
    """An example that cannot be added; ``status`` is the HTTP status that describes it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def crop_of(event: EventRecord) -> str:
    """The event's person crop (its hash), or :class:`ExampleError` 422 if the edge cut none."""
    attributes: dict[str, Any] = event.payload.get("attributes") or {}
    crop = attributes.get("crop_sha256")
    if not isinstance(crop, str) or len(crop) != 64:
        raise ExampleError(422, f"event {event.event_id} has no person crop (attributes.crop_sha256)")
    return crop


def add(session: Session, event: EventRecord, uniform_id: str, label: Label, author: str,
        now: datetime) -> UniformExample:
    """Store the event's crop as an example of ``uniform_id`` at the event's site (committed by the caller).

    The same crop twice for one uniform is refused (409), whichever the label: a crop cannot be both.
    """
    topics.check_id("uniform_id", uniform_id)
    crop = crop_of(event)
    known = session.scalar(sa.select(UniformExample).where(
        UniformExample.site_id == event.site_id, UniformExample.uniform_id == uniform_id,
        UniformExample.crop_sha256 == crop))
    if known is not None:
        raise ExampleError(409, f"this crop is already a {known.label} example of {uniform_id}")
    row = UniformExample(site_id=event.site_id, uniform_id=uniform_id, crop_sha256=crop, label=label,
                         event_id=event.event_id, added_by=author, added_at=now)
    session.add(row)
    session.flush()
    return row


def examples(session: Session, uniform_id: str, site_id: str | None = None) -> list[UniformExample]:
    """A uniform's examples, oldest first (at one site, or at all)."""
    query = sa.select(UniformExample).where(UniformExample.uniform_id == uniform_id)
    if site_id is not None:
        query = query.where(UniformExample.site_id == site_id)
    return list(session.scalars(query.order_by(UniformExample.id)))


def known_uniforms(session: Session) -> list[str]:
    """Uniform ids the console can offer: those with examples and those recognised in courier events."""
    ids = set(session.scalars(sa.select(UniformExample.uniform_id).distinct()))
    recent = sa.select(EventRecord.payload).where(EventRecord.type == "courier_entry") \
        .order_by(EventRecord.id.desc()).limit(500)
    for payload in session.scalars(recent):
        uniform = (payload.get("attributes") or {}).get("uniform_id")
        if isinstance(uniform, str) and uniform:
            ids.add(uniform)
    return sorted(ids)


def payload(session: Session, site_id: str, uniform_id: str) -> str:
    """The retained message for the site's nodes: every example, versioned by the newest example's id."""
    rows = examples(session, uniform_id, site_id)
    return UniformExamples(
        site_id=site_id, uniform_id=uniform_id, version=max(row.id for row in rows),
        examples=[ExamplePayload(crop_sha256=row.crop_sha256, label=row.label,  # type: ignore[arg-type]
                                 url=f"/api/snapshots/{row.crop_sha256}", event_id=row.event_id,
                                 added_at=row.added_at) for row in rows]).to_json()
