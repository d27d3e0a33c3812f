"""The console: its page at ``/`` and the live updates it listens to at ``/api/stream``
(Server-Sent Events, open to any logged-in client). The app mounts the console's static files
from :data:`CONSOLE_DIR` at ``/console``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse

from gridwatch.server.api import auth
from gridwatch.server.api.live import Broadcaster, LiveMessage

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
SSE_KEEPALIVE_S = 15.0

router = APIRouter()


@router.get("/api/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(request: Request, principal: auth.CurrentPrincipal) -> StreamingResponse:
    """Server-Sent Events: ``event`` for each stored camera event, ``ticket`` each time a ticket is
    created or updated, ``transition`` for each audit entry. A grid worker hears only ``ticket``
    messages of the grids they work in."""
    with request.app.state.sessions() as session:
        grids = auth.visible_grids(session, principal)
    broadcaster: Broadcaster = request.app.state.broadcaster

    def allowed(message: LiveMessage) -> bool:
        return grids is None or (message.event == "ticket" and message.data["ticket"]["grid_id"] in grids)

    async def messages() -> AsyncIterator[str]:
        sub = broadcaster.subscribe()
        try:
            # Sent at once so a client knows it is subscribed before anything happens.
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"  # also how a vanished client is noticed
                    continue
                if message is None:
                    break
                if allowed(message):
                    yield message.encode()
        finally:
            broadcaster.unsubscribe(sub)

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/", include_in_schema=False)
def console() -> FileResponse:
    return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})
