"""Who is asking: the session cookie, CSRF, API tokens, and what each role may see, as dependencies
the routers use (the login, logout, account and token routes are :mod:`~gridwatch.server.api.routers.accounts`).

Every ``/api`` route runs :func:`authenticate` (an app-wide dependency) except the health check
and login: a browser is known by its ``gridwatch_session`` cookie (HttpOnly, SameSite=Strict,
Secure over HTTPS or when ``cookie_secure`` is set), an integrator or edge node by
``Authorization: Bearer <token>``. Cookie requests that change something must echo the session's
CSRF token in ``X-CSRF-Token`` (SameSite already stops cross-site posts in current browsers; the
token covers older ones and same-site subdomains). Login takes JSON only, which a cross-site
form cannot send without a CORS preflight the server never grants.

Grid workers see only the tickets of the grids the registry lists them in: :func:`visible_grids`
is the one place that rule lives.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from gridwatch.server.models import UnitMember
from gridwatch.server.registry import accounts

COOKIE = "gridwatch_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({("GET", "/api/health"), ("POST", "/api/auth/login")})
MANAGERS = frozenset({"admin", "supervisor"})
# What an API token may write, by route; every token scope set may include "read" for GETs.
TOKEN_WRITES = {("PUT", "/api/snapshots/{sha256}"): "snapshots:write", ("POST", "/api/snapshots"): "snapshots:write",
                ("PUT", "/api/clips/{event_id}"): "snapshots:write",
                ("POST", "/api/evidence-access"): "evidence:log"}


@dataclass(frozen=True)
class Principal:
    """The caller: a logged-in person (``kind`` user) or an API token (``kind`` token)."""

    kind: str
    name: str  # username or token name
    role: str  # a console role, or "integrator" for tokens
    person_id: str
    unit: str | None = None
    scopes: frozenset[str] = frozenset()
    csrf_token: str | None = None


@dataclass
class LoginLimiter:
    """At most ``attempts`` failed logins per client address and per username in ``window_s``.

    Counted in memory: one server process guards its own door; a restart forgets, which only
    gives an attacker one more short window.
    """

    attempts: int = 5
    window_s: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, *keys: str) -> int:
        """Seconds until these keys may try again (0: now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                recent = self._failures.get(key)
                while recent and recent[0] <= now - self.window_s:
                    recent.popleft()
                if recent and len(recent) >= self.attempts:
                    wait = max(wait, recent[0] + self.window_s - now)
        return int(wait) + 1 if wait else 0

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(time.monotonic())

    def succeeded(self, username_key: str) -> None:
        with self._lock:
            self._failures.pop(username_key, None)


def _unauthorized(message: str = "log in first, or send Authorization: Bearer <token>") -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="gridwatch"'})


def _resolve(request: Request, session: Session) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = accounts.find_token(session, header[7:].strip())
        if token is None:
            raise _unauthorized("unknown or revoked API token")
        return Principal("token", token.name, "integrator", token.name, scopes=frozenset(token.scopes))
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    found = accounts.find_session(session, cookie, request.app.state.clock.now())
    if found is None:
        return None
    account, login = found
    return Principal("user", account.username, account.role, account.person_id, account.unit,
                     csrf_token=login.csrf_token)


def authenticate(request: Request) -> None:
    """App-wide dependency: set ``request.state.principal`` or answer 401/403."""
    request.state.principal = None
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if not path.startswith("/api/") or (request.method, path) in PUBLIC:
        return
    with request.app.state.sessions() as session:
        principal = _resolve(request, session)
    if principal is None:
        if (request.method, path) in {("PUT", "/api/snapshots/{sha256}"), ("PUT", "/api/clips/{event_id}")} \
                and request.app.state.settings.anonymous_snapshot_upload:
            return
        raise _unauthorized()
    if principal.kind == "token":
        needed = "read" if request.method in SAFE_METHODS else TOKEN_WRITES.get((request.method, path))
        if needed is None or needed not in principal.scopes:
            raise HTTPException(403, f"this API token lacks the scope for {request.method} {path}")
    elif request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not (principal.csrf_token and hmac.compare_digest(sent, principal.csrf_token)):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (from GET /api/auth/me)")
    request.state.principal = principal


def current(request: Request) -> Principal:
    principal: Principal | None = request.state.principal
    if principal is None:
        raise _unauthorized()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current)]


def require_roles(*roles: str) -> object:
    """A dependency refusing (403) anyone whose role is not one of ``roles``."""
    allowed = frozenset(roles)

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(403, f"{principal.role} may not do this; allowed: {', '.join(sorted(allowed))}")
        return principal

    return Depends(check)


def visible_grids(session: Session, principal: Principal) -> set[str] | None:
    """The grids whose tickets ``principal`` may see; None means every grid."""
    if principal.role != "grid_worker":
        return None
    return set(session.scalars(sa.select(UnitMember.unit_id).where(UnitMember.person_id == principal.person_id)))
