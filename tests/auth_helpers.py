"""Accounts and logged-in HTTP clients for tests that talk to a running server (no mocks: real
accounts in the server's database, real login, real cookie and CSRF header)."""

from __future__ import annotations

import httpx

from gridwatch.server.registry.accounts import create_account
from gridwatch.server.runner import ServerRunner

PASSWORD = "correct-horse-battery"


def add_account(runner: ServerRunner, username: str, role: str, person_id: str | None = None,
                unit: str | None = None, display_name: str = "") -> None:
    state = runner.app.state
    with state.sessions() as session:
        create_account(session, username=username, password=PASSWORD, role=role, person_id=person_id or username,
                       unit=unit, display_name=display_name, now=state.clock.now())
        session.commit()


def login(base_url: str, username: str, password: str = PASSWORD, timeout: float = 10) -> httpx.Client:
    """An httpx client logged in as ``username``, sending the session's CSRF token on every request."""
    client = httpx.Client(base_url=base_url, timeout=timeout)
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client
