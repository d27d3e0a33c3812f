"""Snapshot images: uploaded by edge nodes and phones (PUT by hash, POST to be hashed), viewed by
the console, each view logged (:mod:`~gridwatch.server.privacy.evidence_log`). Every upload passes
the site's blur policy first (:mod:`~gridwatch.server.privacy.blur_policy`): what breaks it is never stored.
Event clips (the MP4 an edge records around an incident's start and end) travel the same way, filed by event."""

from __future__ import annotations

import hashlib
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gridwatch.broker.blur import HEADER as BLUR_HEADER
from gridwatch.broker.contract import CLIP_FACES_BLURRED_HEADER
from gridwatch.server.api import auth
from gridwatch.server.api.deps import SessionDep
from gridwatch.server.api.schemas import (
    MAX_ROW_ID,
    ClipOut,
    ClipStored,
    ErrorResponse,
    RowIdQuery,
    SnapshotStored,
)
from gridwatch.server.ingest.clips import EVENT_ID_RE, MAX_CLIP_BYTES, MEDIA_TYPE, SHA256_HEADER, ClipStore
from gridwatch.server.ingest.snapshots import (
    MAX_SNAPSHOT_BYTES,
    SHA256_RE,
    SnapshotError,
    SnapshotStore,
    StoredSnapshot,
)
from gridwatch.server.models import EventRecord, Ticket
from gridwatch.server.privacy import blur_policy, evidence_log
from gridwatch.server.privacy.blur_policy import BlurRefused

router = APIRouter(prefix="/api")

Sha256 = Annotated[str, Path(pattern=SHA256_RE.pattern, description="64 lowercase hex digits")]
EventId = Annotated[str, Path(pattern=EVENT_ID_RE.pattern, description="the event's id: 32 lowercase hex digits")]


async def _bounded_body(request: Request, limit: int = MAX_SNAPSHOT_BYTES, what: str = "snapshot") -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise SnapshotError(413, "too_large", f"{what} is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise SnapshotError(413, "too_large", f"{what} is larger than {limit} bytes")
    return bytes(body)


async def _admitted(request: Request, sha256: str, body: bytes) -> StoredSnapshot:
    """Store ``body`` if the site's blur policy admits it (refused with 422 and a reason otherwise)."""
    settings = request.app.state.settings
    await run_in_threadpool(blur_policy.enforce, body, request.headers.get(BLUR_HEADER),
                            settings.privacy_require_face_blur, settings.privacy_face_check)
    snapshots: SnapshotStore = request.app.state.snapshots
    return await run_in_threadpool(snapshots.put, sha256, body)


@router.put(
    "/snapshots/{sha256}",
    response_model=SnapshotStored,
    status_code=201,
    responses={200: {"model": SnapshotStored}, 400: {"model": ErrorResponse},
               413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def put_snapshot(sha256: Sha256, request: Request, response: Response) -> SnapshotStored:
    body = await _bounded_body(request)
    stored = await _admitted(request, sha256, body)
    response.status_code = 201 if stored.created else 200
    return SnapshotStored(sha256=stored.sha256, size=stored.size, content_type=stored.media_type,
                          created=stored.created, url=f"/api/snapshots/{stored.sha256}")


@router.post("/snapshots", response_model=SnapshotStored, status_code=201,
             responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def post_snapshot(request: Request, response: Response) -> SnapshotStored:
    """Upload a photo whose hash the client cannot compute (a phone browser on plain HTTP has no
    WebCrypto): the server hashes it. Same limits and store as ``PUT /api/snapshots/{sha256}``."""
    body = await _bounded_body(request)
    stored = await _admitted(request, hashlib.sha256(body).hexdigest(), body)
    response.status_code = 201 if stored.created else 200
    return SnapshotStored(sha256=stored.sha256, size=stored.size, content_type=stored.media_type,
                          created=stored.created, url=f"/api/snapshots/{stored.sha256}")


@router.get("/snapshots/{sha256}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}},
                       404: {"model": ErrorResponse}})
def get_snapshot(sha256: Sha256, request: Request, ticket_id: RowIdQuery = None) -> FileResponse:
    """The image; ``ticket_id`` names the ticket it is viewed as evidence of, for the access log."""
    snapshots: SnapshotStore = request.app.state.snapshots
    found = snapshots.find(sha256)
    if found is None:
        raise HTTPException(404, f"no snapshot {sha256}")
    path, media_type = found
    evidence_log.record(request, sha256, ticket_id)  # every view is accountable, so no browser cache either
    headers = {"Cache-Control": evidence_log.CACHE_CONTROL, "ETag": f'"{sha256}"'}
    return FileResponse(path, media_type=media_type, headers=headers)


@router.put("/clips/{event_id}", response_model=ClipStored, status_code=201,
            responses={200: {"model": ClipStored}, 400: {"model": ErrorResponse}, 409: {"model": ErrorResponse},
                       413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def put_clip(event_id: EventId, request: Request, response: Response,
                   sha256: Annotated[str, Header(alias=SHA256_HEADER, pattern=SHA256_RE.pattern,
                                                 description="sha256 of the body, checked")],
                   faces_blurred: Annotated[bool, Header(alias=CLIP_FACES_BLURRED_HEADER, description=(
                       "whether the edge blurred the clip's faces (its rule's blur_faces)"))] = False) -> ClipStored:
    """The H.264 MP4 clip of event ``event_id`` (uploaded after the event: the seconds after it are recorded
    first). The same clip again is a no-op (200); a different one for the same event is refused (409); a
    site that requires face blur refuses a clip whose faces the edge did not blur (422)."""
    if request.app.state.settings.privacy_require_face_blur and not faces_blurred:
        raise BlurRefused("faces_not_blurred", f"this site requires blurred faces: a clip must declare "
                          f"{CLIP_FACES_BLURRED_HEADER}: true (its rule's blur_faces on)")
    body = await _bounded_body(request, MAX_CLIP_BYTES, "clip")
    clips = ClipStore.beside(request.app.state.snapshots)
    stored = await run_in_threadpool(clips.put, event_id, body, sha256)
    response.status_code = 201 if stored.created else 200
    return ClipStored(event_id=event_id, sha256=stored.sha256, size=stored.size, created=stored.created,
                      url=f"/api/clips/{event_id}")


@router.get("/clips", response_model=list[ClipOut])
def list_clips(ticket_id: Annotated[int, Query(ge=1, le=MAX_ROW_ID)], request: Request, session: SessionDep,
               principal: auth.CurrentPrincipal) -> list[ClipOut]:
    """The clips uploaded for a ticket's events, oldest first (an event's clip comes seconds after it)."""
    query = (sa.select(EventRecord).join(Ticket, EventRecord.ticket_id == Ticket.id)
             .where(EventRecord.ticket_id == ticket_id).order_by(EventRecord.observed_at, EventRecord.id))
    grids = auth.visible_grids(session, principal)
    if grids is not None:
        query = query.where(Ticket.grid_id.in_(grids))
    clips = ClipStore.beside(request.app.state.snapshots)
    return [ClipOut(event_id=e.event_id, phase=e.phase, observed_at=e.observed_at, url=f"/api/clips/{e.event_id}")
            for e in session.scalars(query) if clips.find(e.event_id) is not None]


@router.get("/clips/{event_id}", response_class=FileResponse,
            responses={200: {"content": {MEDIA_TYPE: {}}}, 404: {"model": ErrorResponse}})
def get_clip(event_id: EventId, request: Request) -> FileResponse:
    """The clip of an event (byte ranges served, so a browser can seek); 404 while it is not uploaded yet.
    Each view (its first range) is in the evidence access log, as a snapshot's is."""
    clips = ClipStore.beside(request.app.state.snapshots)
    path = clips.find(event_id)
    if path is None:
        raise HTTPException(404, f"no clip for event {event_id}")
    if evidence_log.is_first_range(request):
        evidence_log.record_clip(request, clips.sha256_of(path), event_id)
    return FileResponse(path, media_type=MEDIA_TYPE, headers={"Cache-Control": evidence_log.CACHE_CONTROL})
