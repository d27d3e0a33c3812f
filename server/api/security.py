"""Response headers that keep the console from being framed, sniffed or fed foreign scripts.

Every response, API or console, carries them, so a page someone forgot to think about is covered
too: a strict Content-Security-Policy (scripts and styles only from this server, no inline script,
``frame-ancestors 'none'`` against clickjacking a supervisor into dispatching or a guard into
opening a gate), the same refusal for old browsers (``X-Frame-Options``), no MIME sniffing, no
referrer leaving the site (ticket URLs carry ids), and HSTS once the request came over TLS. A
route that needs a different policy (the API docs' one inline script) sets its own header first
and keeps it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HSTS = "max-age=31536000"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def policy(script_hashes: list[str] | None = None, *, inline_styles: bool = False, blob_workers: bool = False) -> str:
    """The strict policy with exceptions a single page may need, each as narrow as it can be."""
    scripts = " ".join(["'self'", *(f"'{h}'" for h in script_hashes or [])])
    extra = "; worker-src 'self' blob:" if blob_workers else ""
    return (CSP.replace("script-src 'self'", f"script-src {scripts}")
            .replace("style-src 'self'", "style-src 'self' 'unsafe-inline'" if inline_styles else "style-src 'self'")
            + extra)


class SecurityHeaders:
    """Pure ASGI (not ``BaseHTTPMiddleware``), so server-sent event streams pass through unbuffered.
    Runs inside the proxy-headers middleware, so ``scope["scheme"]`` is already the client's.
    One policy for everyone: the browser tests drive the console under the same one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if tls:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
