"""Passwords in Mosquitto's own format, hashed by Mosquitto's own ``mosquitto_passwd``.

Using the binary instead of re-implementing its PBKDF2-SHA512 ``$7$`` format means the hash is
whatever the installed broker accepts. The clear password goes through a 0600 file, never the
command line, where ``ps`` on a shared host would show it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from gridwatch.broker.security.principals import Principal


class PasswdToolMissingError(RuntimeError):
    """``mosquitto_passwd`` is not installed."""


def new_password() -> str:
    """A random password (192 bits), URL-safe so it can sit in an mqtts:// URL without escaping."""
    return secrets.token_urlsafe(24)


def _tool() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin:/usr/sbin")
    if not found:
        raise PasswdToolMissingError(
            "mosquitto_passwd is needed to hash broker passwords: install Mosquitto (apt-get install mosquitto)")
    return found


def hash_password(username: str, password: str, workdir: Path) -> str:
    """Return Mosquitto's hash of ``password`` (the part after ``username:`` in a password file)."""
    fd, name = tempfile.mkstemp(dir=workdir, prefix=".passwd-")  # mkstemp creates it 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{username}:{password}\n")
        result = subprocess.run([_tool(), "-U", str(path)], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd failed: {result.stderr.strip() or result.stdout.strip()}")
        user, _, hashed = path.read_text(encoding="utf-8").strip().partition(":")
    finally:
        path.unlink(missing_ok=True)
    if user != username or not hashed.startswith("$"):
        raise RuntimeError("mosquitto_passwd wrote an unexpected line")
    return hashed


def render_passwords(principals: list[Principal]) -> str:
    """Mosquitto's password file: one ``user:hash`` line per active principal."""
    active = sorted((p for p in principals if p.active), key=lambda p: p.username)
    return "".join(f"{p.username}:{p.password_hash}\n" for p in active)
