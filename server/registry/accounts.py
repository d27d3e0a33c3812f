"""Accounts, login sessions and API tokens: storage and the password KDF, no HTTP.

Passwords are hashed with **scrypt** from the standard library (``hashlib.scrypt``): it is a
memory-hard KDF (RFC 7914) recommended by OWASP next to argon2id, and choosing it adds no
compiled dependency to a server that must install offline on a compound's own machine. The
parameters (N=2^15, r=8, p=1: 32 MiB, ~50 ms) are stored in each hash, so they can be raised
later and old hashes still verify.

Session cookies and API tokens are random 256-bit strings; only their SHA-256 is stored (a fast
hash is enough for high-entropy secrets), so a copy of the database logs nobody in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.models import Account, ApiToken, LoginSession

# The console's roles; integrators are not accounts, they hold API tokens.
ROLES = ("admin", "supervisor", "security", "grid_worker", "department")
TOKEN_SCOPES = ("read", "snapshots:write", "open311:write", "evidence:log")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD = 8


class AccountError(ValueError):
    """A request to create an account or token that cannot be honoured (the message says why)."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with base64 salt and hash."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=SCRYPT_MAXMEM, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Verified against when the username is unknown, so timing does not reveal which usernames exist.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_account(session: Session, *, username: str, password: str, role: str, person_id: str,
                   now: datetime, display_name: str = "", unit: str | None = None) -> Account:
    """Add an account (committed by the caller); the person id is the actor in the audit trail."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if role == "department" and not unit:
        raise AccountError("a department account needs its unit (the registry department id)")
    if session.scalar(sa.select(Account.id).where(Account.username == username)) is not None:
        raise AccountError(f"username {username!r} is taken")
    account = Account(username=username, password_hash=hash_password(password), role=role, person_id=person_id,
                      display_name=display_name or username, unit=unit, active=True, created_at=now)
    session.add(account)
    session.flush()
    return account


def check_login(session: Session, username: str, password: str) -> Account | None:
    """The active account with this username and password, else None (same work either way)."""
    account = session.scalar(sa.select(Account).where(Account.username == username))
    ok = verify_password(password, account.password_hash if account else _DUMMY_HASH)
    return account if ok and account is not None and account.active else None


@dataclass(frozen=True)
class NewSession:
    cookie: str  # goes to the browser; never stored
    csrf_token: str


def open_session(session: Session, account: Account, now: datetime, ttl: timedelta) -> NewSession:
    """A new login (committed by the caller); expired logins of anyone are cleared on the way."""
    session.execute(sa.delete(LoginSession).where(LoginSession.expires_at <= now))
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_hex(32)
    session.add(LoginSession(token_sha256=_sha256(cookie), account_id=account.id, csrf_token=csrf,
                             created_at=now, expires_at=now + ttl))
    return NewSession(cookie, csrf)


def find_session(session: Session, cookie: str, now: datetime) -> tuple[Account, LoginSession] | None:
    row = session.get(LoginSession, _sha256(cookie))
    if row is None or row.expires_at <= now:
        return None
    account = session.get(Account, row.account_id)
    if account is None or not account.active:
        return None
    return account, row


def close_session(session: Session, cookie: str) -> None:
    session.execute(sa.delete(LoginSession).where(LoginSession.token_sha256 == _sha256(cookie)))


def issue_token(session: Session, name: str, scopes: list[str], now: datetime) -> str:
    """A new API token; the returned plaintext is shown once and never stored."""
    unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
    if unknown or not scopes:
        raise AccountError(f"scopes must be some of {', '.join(TOKEN_SCOPES)}; got {', '.join(unknown) or 'none'}")
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise AccountError(f"a token named {name!r} exists")
    token = "gwt_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_sha256=_sha256(token), scopes=sorted(set(scopes)), created_at=now))
    return token


def find_token(session: Session, token: str) -> ApiToken | None:
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_sha256 == _sha256(token)))
    return row if row is not None and row.revoked_at is None else None


def ensure_admin(session: Session, password: str, now: datetime, username: str = "admin") -> bool:
    """Create the first admin if no admin exists yet; True if one was created (committed)."""
    if session.scalar(sa.select(Account.id).where(Account.role == "admin")) is not None:
        return False
    try:
        create_account(session, username=username, password=password, role="admin", person_id=username, now=now)
        session.commit()
    except sa.exc.IntegrityError:  # another replica, started at the same moment, created it first
        session.rollback()
        return False
    return True
