"""Accounts and access on a real server: login and logout, the cookie's flags, CSRF, the login rate
limit, API tokens with scopes, roles, and the first admin from the environment or the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridwatch.server.registry.accounts import hash_password, verify_password
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import PASSWORD, add_account, login


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[ServerRunner]:
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, admin_password=PASSWORD, login_attempts=3,
                              anonymous_snapshot_upload=False)
    with ServerRunner(settings, start_ingest=False) as server:
        yield server


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("scrypt$32768$8$1$") and first != second  # salted
    assert verify_password("s3cret-pass", first) and not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "md5$whatever")


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(runner: ServerRunner) -> None:
    with httpx.Client(base_url=runner.url) as http:
        assert http.get("/api/auth/me").status_code == 401
        response = http.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        assert response.status_code == 200
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        me = http.get("/api/auth/me").json()
        assert me["role"] == "admin" and len(me["csrf_token"]) == 64
        stolen = dict(http.cookies)
        assert http.post("/api/auth/logout").status_code == 403  # CSRF token missing
        assert http.post("/api/auth/logout", headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 204
        assert httpx.get(f"{runner.url}/api/tickets", cookies=stolen).status_code == 401  # gone server-side


def test_failed_logins_are_rate_limited(runner: ServerRunner) -> None:
    for _ in range(3):
        wrong = httpx.post(f"{runner.url}/api/auth/login", json={"username": "admin", "password": "nope-nope"})
        assert wrong.status_code == 401
    limited = httpx.post(f"{runner.url}/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_roles_guard_what_changes_the_system(runner: ServerRunner) -> None:
    add_account(runner, "guard", "security", "p-sec-1")
    guard = login(runner.url, "guard")
    admin = login(runner.url, "admin")
    try:
        assert guard.put("/api/registry", content="{}").status_code == 403
        assert guard.post("/api/accounts", json={"username": "x", "password": "longenough", "role": "admin",
                                                 "person_id": "x"}).status_code == 403
        assert guard.get("/api/dead-letters").status_code == 403
        made = admin.post("/api/accounts", json={"username": "wang", "password": "longenough", "role": "grid_worker",
                                                 "person_id": "p-wang", "display_name": "王强"})
        assert made.status_code == 201 and "password" not in made.text
        assert admin.post("/api/accounts", json={"username": "bad", "password": "longenough", "role": "root",
                                                 "person_id": "x"}).status_code == 422
        login(runner.url, "wang", "longenough").close()
    finally:
        guard.close()
        admin.close()


def test_api_tokens_act_within_their_scopes(runner: ServerRunner) -> None:
    admin = login(runner.url, "admin")
    try:
        edge = admin.post("/api/tokens", json={"name": "edge-gate-north", "scopes": ["snapshots:write"]}).json()
        reader = admin.post("/api/tokens", json={"name": "integrator", "scopes": ["read"]}).json()
        assert admin.post("/api/tokens", json={"name": "x", "scopes": ["admin"]}).status_code == 422
    finally:
        admin.close()
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    sha = hashlib.sha256(jpeg).hexdigest()
    url = f"{runner.url}/api/snapshots/{sha}"

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    assert httpx.put(url, content=jpeg).status_code == 401  # anonymous upload is off here
    assert httpx.put(url, content=jpeg, headers=bearer(reader["token"])).status_code == 403
    assert httpx.put(url, content=jpeg, headers=bearer(edge["token"])).status_code in (200, 201)
    tickets = f"{runner.url}/api/tickets"
    assert httpx.get(tickets, headers=bearer(edge["token"])).status_code == 403
    assert httpx.get(tickets, headers=bearer(reader["token"])).status_code == 200
    assert httpx.get(tickets, headers=bearer("gwt_forged")).status_code == 401


def test_add_user_creates_an_account_from_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.deploy", "server", "add-user", "chen", "--role", "supervisor",
         "--person-id", "p-chen", "--name", "陈主任", "--data-dir", str(tmp_path / "data")],
        env={"GRIDWATCH_NEW_PASSWORD": "a-long-password", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "created supervisor account chen" in result.stdout
    with ServerRunner(ServerSettings(data_dir=tmp_path / "data", port=0), start_ingest=False) as server:
        me = login(server.url, "chen", "a-long-password")
        try:
            assert me.get("/api/auth/me").json()["person_id"] == "p-chen"
        finally:
            me.close()
