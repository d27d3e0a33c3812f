"""Run the server inside another program (``gridwatch demo``, tests) on a background thread.

uvicorn's ``Server`` is driven directly rather than through ``uvicorn.run`` so the caller keeps
its own main thread and signal handlers, learns the real port when it asked for port 0, and can
stop the server cleanly, including open SSE streams that would otherwise hold shutdown open.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from gridwatch.server.api.app import create_app
from gridwatch.server.clock import Clock
from gridwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's live streams as soon as shutdown begins.

    uvicorn waits for open responses before it runs the app's shutdown, and an SSE response
    never ends by itself: without this, every Ctrl-C with a console open would wait out the
    graceful timeout and then cancel the stream with a traceback.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.config.app.state.broadcaster.close()
        await super().shutdown(sockets)


def uvicorn_server(app: FastAPI, settings: ServerSettings, **overrides: Any) -> uvicorn.Server:
    """The uvicorn server the CLI and the runner share, for an app from :func:`create_app`."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # keep the host program's logging setup
        "access_log": False,
        # create_app trusts X-Forwarded-* from GRIDWATCH_TRUSTED_PROXIES only; uvicorn's own default
        # (trust 127.0.0.1) would let any local process claim to be the TLS proxy.
        "proxy_headers": False,
        # A last resort: streams are ended at shutdown, but never let a client hold it forever.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
    options.update(overrides)
    return _Server(uvicorn.Config(app, **options))


class ServerRunner:
    """Start the full server (migrations, MQTT ingest, HTTP) on a thread; ``start()``/``stop()``.

    Usable as a context manager. ``url`` is the base HTTP URL once started.
    """

    def __init__(self, settings: ServerSettings, *, start_ingest: bool = True, clock: Clock | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, start_ingest=start_ingest, clock=clock)
        self._server = uvicorn_server(self.app, settings)
        self._thread: threading.Thread | None = None
        self.port: int = settings.port

    @property
    def url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Return once the HTTP port answers; raise if startup failed or took too long."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self._server.run, name="gridwatch-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the GridWatch server failed to start (see the log for why)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the GridWatch server did not start within {timeout}s")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._wait_for_port(deadline)
        log.info("GridWatch server at %s", self.url)

    def _wait_for_port(self, deadline: float) -> None:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        while True:
            try:
                with socket.create_connection((host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        """End live streams, stop ingest (acknowledged work is kept) and the HTTP server."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the GridWatch server thread did not stop within %ss", timeout)
        self._thread = None

    def __enter__(self) -> ServerRunner:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
