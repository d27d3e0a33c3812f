"""The broker directory: its layout, its registry, and the one function that regenerates it.

::

    <dir>/registry.json          listener settings and every principal issued (0600)
    <dir>/ca/ca.key, ca.crt      the private CA; the key never leaves this folder (0700)
    <dir>/broker/                what Mosquitto reads: mosquitto.conf, ca.crt, server.crt/.key,
                                 crl.pem, passwd, acl, data/ (owned by the broker's user)
    <dir>/clients/<user>/        what to hand to a principal: ca.crt, client.crt, client.key,
                                 password (0700 folder, 0600 secrets)

Every command changes the registry and then calls :func:`regenerate`, so the password file, ACL,
CRL and config can never drift from it. Files are replaced atomically: a broker reloading while we
write sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from gridwatch.broker.security import pki
from gridwatch.broker.security.acl import node_prefix, render_acl
from gridwatch.broker.security.mosquitto_conf import BrokerFiles, render_conf
from gridwatch.broker.security.passwords import hash_password, new_password, render_passwords
from gridwatch.broker.security.principals import Kind, Principal, Registry, username
from gridwatch.broker.topics import TopicError

SECRET = 0o600
PUBLIC = 0o644


class BrokerDirError(RuntimeError):
    """A broker directory that is missing, already initialised, or asked for something it cannot do."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def broker(self) -> BrokerFiles:
        b = self.root / "broker"
        return BrokerFiles(ca_cert=b / "ca.crt", server_cert=b / "server.crt", server_key=b / "server.key",
                           crl=b / "crl.pem", passwords=b / "passwd", acl=b / "acl", data=b / "data",
                           pid=b / "mosquitto.pid")

    @property
    def conf(self) -> Path:
        return self.root / "broker" / "mosquitto.conf"

    def client_dir(self, user: str) -> Path:
        return self.root / "clients" / user


@dataclass(frozen=True)
class Credentials:
    """What a new principal needs; the password is also stored 0600 in ``folder/password``."""

    username: str
    folder: Path
    password: str


def _write(path: Path, data: bytes | str, mode: int, owner: str | None = None) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (never briefly wider)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, mode)
        if owner is not None:
            _chown(Path(tmp), owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chown(path: Path, owner: str) -> None:
    """Hand a file Mosquitto reads to the user it runs as; only root can, and only root needs to."""
    if os.geteuid() == 0 and owner != "root":
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _mkdir(path: Path, mode: int, owner: str | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        _chown(path, owner)


def load(root: Path) -> Registry:
    layout = Layout(root)
    if not layout.registry.exists():
        raise BrokerDirError(f"{root} is not a broker directory: run `gridwatch broker init --dir {root}` first")
    return Registry.model_validate_json(layout.registry.read_text(encoding="utf-8"))


def init(root: Path, *, hostnames: list[str], tls_port: int, tls_address: str | None, local_port: int | None,
         run_as: str) -> Registry:
    """Create the CA, the broker's certificate and an empty registry, then every broker file."""
    layout = Layout(root)
    if layout.registry.exists():
        raise BrokerDirError(f"{root} is already a broker directory; its CA is kept (add principals instead)")
    if os.geteuid() == 0 and run_as != "root":
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise BrokerDirError(f"user {run_as!r} does not exist: install Mosquitto or pass --user") from None
    registry = Registry(hostnames=hostnames, tls_port=tls_port, tls_address=tls_address, local_port=local_port,
                        run_as=run_as)
    _mkdir(root, 0o755)
    _mkdir(layout.ca_key.parent, 0o700)
    _mkdir(layout.conf.parent, 0o750, run_as)
    _mkdir(layout.broker.data, 0o700, run_as)
    ca_key, ca_cert = pki.make_ca(f"GridWatch broker CA {hostnames[0]}")
    _write(layout.ca_key, pki.key_pem(ca_key), SECRET)
    _write(layout.ca_cert, pki.cert_pem(ca_cert), PUBLIC)
    server_key, server_cert = pki.issue(ca_key, ca_cert, hostnames[0], hostnames=hostnames)
    _write(layout.broker.server_key, pki.key_pem(server_key), SECRET, run_as)
    _write(layout.broker.server_cert, pki.cert_pem(server_cert), PUBLIC, run_as)
    _write(layout.broker.ca_cert, pki.cert_pem(ca_cert), PUBLIC, run_as)
    regenerate(root, registry)
    return registry


def add(root: Path, kind: Kind, name: str, site_id: str | None) -> Credentials:
    """Issue a certificate and a password to a new principal and grant it its ACL block."""
    registry = load(root)
    layout = Layout(root)
    user = username(kind, name, site_id)
    if kind is Kind.NODE:
        assert site_id is not None
        try:
            node_prefix(site_id, name)
        except TopicError as exc:
            raise BrokerDirError(str(exc)) from None
    if registry.find_active(user) is not None:
        raise BrokerDirError(f"{user} already exists; revoke it first to issue new credentials")
    ca_key = pki.load_key(layout.ca_key.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    key, cert = pki.issue(ca_key, ca_cert, user)
    password = new_password()
    principal = Principal(kind=kind, name=name, site_id=site_id, cert_serial=cert.serial_number,
                          password_hash=hash_password(user, password, root), issued_at=datetime.now(UTC))
    folder = layout.client_dir(user)
    _mkdir(folder, 0o700)
    _write(folder / "ca.crt", pki.cert_pem(ca_cert), PUBLIC)
    _write(folder / "client.crt", pki.cert_pem(cert), PUBLIC)
    _write(folder / "client.key", pki.key_pem(key), SECRET)
    _write(folder / "password", password + "\n", SECRET)
    registry.principals.append(principal)
    regenerate(root, registry)
    return Credentials(username=user, folder=folder, password=password)


def revoke(root: Path, user: str) -> Principal:
    """Revoke a principal: its certificate goes on the CRL, its password and ACL block go away."""
    registry = load(root)
    principal = registry.find_active(user)
    if principal is None:
        raise BrokerDirError(f"no active principal {user!r} in {root}")
    principal.revoked_at = datetime.now(UTC)
    regenerate(root, registry)
    shutil.rmtree(Layout(root).client_dir(user), ignore_errors=True)
    return principal


def regenerate(root: Path, registry: Registry) -> None:
    """Write the registry, then every file derived from it (CRL, password file, ACL, config)."""
    layout = Layout(root)
    files, owner = layout.broker, registry.run_as
    ca_key = pki.load_key(layout.ca_key.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    revoked = [(p.cert_serial, p.revoked_at) for p in registry.principals if p.revoked_at is not None]
    _write(layout.registry, registry.model_dump_json(indent=2) + "\n", SECRET)
    _write(files.crl, pki.crl_pem(pki.make_crl(ca_key, ca_cert, revoked)), PUBLIC, owner)
    _write(files.passwords, render_passwords(registry.principals), SECRET, owner)
    _write(files.acl, render_acl(registry.principals), SECRET, owner)
    _write(layout.conf, render_conf(files, tls_port=registry.tls_port, tls_address=registry.tls_address,
                                    local_port=registry.local_port, run_as=owner), PUBLIC, owner)


def reload_broker(root: Path) -> int | None:
    """SIGHUP the Mosquitto running from this directory (it re-reads passwords, ACL and CRL).

    Returns its pid, or None when none runs: the pid file is absent, stale, or names another program
    (checked, so a recycled pid never gets a SIGHUP that would kill an unrelated process).
    """
    pid_file = Layout(root).broker.pid
    try:
        pid = int(pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    if command != "mosquitto":
        return None
    os.kill(pid, signal.SIGHUP)
    return pid
