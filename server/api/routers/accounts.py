"""Logging in and out of the console, who am I, and the admin's accounts and API tokens.

The checks themselves (cookie, CSRF, bearer token, roles) are the dependencies in
:mod:`~gridwatch.server.api.auth`; these routes open and close the sessions those checks read.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from gridwatch.server.api import auth
from gridwatch.server.api.schemas import ErrorResponse
from gridwatch.server.models import Account
from gridwatch.server.registry import accounts

router = APIRouter(prefix="/api")


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    username: str
    display_name: str
    role: str
    person_id: str
    unit: str | None
    csrf_token: str


class AccountIn(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=256)
    role: str
    person_id: str = Field(min_length=1, max_length=64)
    display_name: str = Field("", max_length=200)
    unit: str | None = Field(None, max_length=64)


class AccountOut(BaseModel):
    username: str
    display_name: str
    role: str
    person_id: str
    unit: str | None
    active: bool


class TokenIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    scopes: list[str]


class TokenOut(BaseModel):
    name: str
    scopes: list[str]
    token: str = Field(description="shown once; only its hash is kept")


def _me(account: Account, csrf: str) -> Me:
    return Me(username=account.username, display_name=account.display_name, role=account.role,
              person_id=account.person_id, unit=account.unit, csrf_token=csrf)


@router.post("/auth/login", response_model=Me, responses={429: {"model": ErrorResponse}})
def login(body: LoginIn, request: Request, response: Response) -> Me:
    state = request.app.state
    limiter: auth.LoginLimiter = state.login_limiter
    client = f"ip:{request.client.host if request.client else '?'}"
    user_key = f"user:{body.username.lower()}"
    wait = limiter.retry_after(client, user_key)
    if wait:
        raise HTTPException(429, f"too many failed logins; try again in {wait} s", headers={"Retry-After": str(wait)})
    with state.sessions() as session:
        account = accounts.check_login(session, body.username, body.password)
        if account is None:
            limiter.failed(client, user_key)
            raise HTTPException(401, "wrong username or password")
        limiter.succeeded(user_key)
        ttl = timedelta(hours=state.settings.session_hours)
        opened = accounts.open_session(session, account, state.clock.now(), ttl)
        me = _me(account, opened.csrf_token)
        session.commit()
    # The scheme is the client's: X-Forwarded-Proto counts when a trusted proxy sent it (settings.trusted_proxies).
    secure = request.url.scheme == "https" or state.settings.cookie_secure
    response.set_cookie(auth.COOKIE, opened.cookie, max_age=int(ttl.total_seconds()), httponly=True, secure=secure,
                        samesite="strict", path="/")
    return me


@router.post("/auth/logout", status_code=204)
def logout(request: Request, principal: auth.CurrentPrincipal) -> Response:
    cookie = request.cookies.get(auth.COOKIE)
    if cookie:
        with request.app.state.sessions() as session:
            accounts.close_session(session, cookie)
            session.commit()
    response = Response(status_code=204)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=Me)
def me(request: Request, principal: auth.CurrentPrincipal) -> Me:
    if principal.kind != "user":
        raise HTTPException(403, "API tokens have no console session")
    with request.app.state.sessions() as session:
        account = session.scalar(sa.select(Account).where(Account.username == principal.name))
        return _me(account, principal.csrf_token or "")


@router.get("/accounts", response_model=list[AccountOut], dependencies=[auth.require_roles("admin")])
def list_accounts(request: Request) -> list[AccountOut]:
    with request.app.state.sessions() as session:
        rows = session.scalars(sa.select(Account).order_by(Account.username))
        return [AccountOut.model_validate(r, from_attributes=True) for r in rows]


@router.post("/accounts", response_model=AccountOut, status_code=201, dependencies=[auth.require_roles("admin")])
def create_account(body: AccountIn, request: Request) -> AccountOut:
    with request.app.state.sessions() as session:
        try:
            row = accounts.create_account(session, now=request.app.state.clock.now(), **body.model_dump())
        except accounts.AccountError as exc:
            raise HTTPException(422, str(exc)) from None
        session.commit()
        return AccountOut.model_validate(row, from_attributes=True)


@router.post("/tokens", response_model=TokenOut, status_code=201, dependencies=[auth.require_roles("admin")])
def create_token(body: TokenIn, request: Request) -> TokenOut:
    with request.app.state.sessions() as session:
        try:
            token = accounts.issue_token(session, body.name, body.scopes, request.app.state.clock.now())
        except accounts.AccountError as exc:
            raise HTTPException(422, str(exc)) from None
        session.commit()
    return TokenOut(name=body.name, scopes=sorted(set(body.scopes)), token=token)
