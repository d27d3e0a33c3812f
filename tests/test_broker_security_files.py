"""What `gridwatch broker init/add-*/revoke-*` write: permissions, ids, the ACL, the CRL (no broker needed)."""

from __future__ import annotations

import getpass
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from gridwatch.broker.cli import broker


def run(*args: str) -> Result:
    return CliRunner().invoke(broker, list(args), catch_exceptions=False)


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "broker-dir"
    result = run("init", "--dir", str(directory), "--hostname", "broker.compound.lan", "--user", getpass.getuser())
    assert result.exit_code == 0, result.output
    return directory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_private_and_nobody_can_connect_yet(site_dir: Path) -> None:
    assert run("add-node", "--dir", str(site_dir), "--site", "s1", "--node", "gate").exit_code == 0
    client = site_dir / "clients" / "gate@s1"
    for secret in (site_dir / "registry.json", site_dir / "ca" / "ca.key", site_dir / "broker" / "server.key",
                   site_dir / "broker" / "passwd", site_dir / "broker" / "acl", client / "client.key",
                   client / "password"):
        assert mode(secret) == 0o600, secret
    assert mode(site_dir / "ca") == mode(client) == 0o700
    conf = (site_dir / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "require_certificate true" in conf and "use_username_as_clientid true" in conf
    assert "max_packet_size 262144" in conf
    assert "127.0.0.1" not in conf  # no plain listener unless --local-port is given
    password = (client / "password").read_text().strip()
    assert password not in (site_dir / "broker" / "passwd").read_text()  # only the hash


def test_init_keeps_an_existing_ca(site_dir: Path) -> None:
    ca_key = (site_dir / "ca" / "ca.key").read_bytes()
    result = run("init", "--dir", str(site_dir), "--hostname", "other")
    assert result.exit_code == 1
    assert "already a broker directory" in result.output
    assert (site_dir / "ca" / "ca.key").read_bytes() == ca_key


@pytest.mark.parametrize("bad", ["a+b", "a#b", "a/b", "+", "#", "-x", "a b", "a@b"])
@pytest.mark.parametrize("command", [
    ("add-node", "--site", "s1", "--node", "{}"),
    ("add-node", "--site", "{}", "--node", "n1"),
    ("add-integrator", "--site", "s1", "--name", "{}"),
    ("add-server", "--name", "{}"),
    ("revoke-node", "--site", "s1", "--node", "{}"),
])
def test_unsafe_ids_rejected_before_anything_is_written(site_dir: Path, command: tuple[str, ...], bad: str) -> None:
    """Ids become user names and ACL topic segments: '+', '#', '/' would widen a grant (CVE-2017-7650)."""
    registry = (site_dir / "registry.json").read_text()
    result = run(command[0], "--dir", str(site_dir), *(arg.format(bad) for arg in command[1:]))
    assert result.exit_code == 2
    assert "not a valid id" in result.output
    assert (site_dir / "registry.json").read_text() == registry


def test_acl_grants_exactly_the_contract(site_dir: Path) -> None:
    d = str(site_dir)
    run("add-node", "--dir", d, "--site", "s1", "--node", "gate")
    run("add-server", "--dir", d)
    run("add-integrator", "--dir", d, "--site", "s1", "--name", "acme")
    blocks = (site_dir / "broker" / "acl").read_text().split("\n\n")[1:]
    assert blocks == [
        "# integrator acme of site s1\nuser acme@s1\ntopic read gridwatch/v1/s1/#",
        "# node gate of site s1\nuser gate@s1\ntopic write gridwatch/v1/s1/gate/status\n"
        "topic write gridwatch/v1/s1/gate/+/status\ntopic write gridwatch/v1/s1/gate/+/events\n"
        "topic write gridwatch/v1/s1/gate/commands\ntopic write gridwatch/v1/s1/gate/commands/ack\n"
        "topic read gridwatch/v1/s1/gate/commands\ntopic read gridwatch/v1/s1/gate/commands/ack\n"
        "topic read gridwatch/v1/s1/gate/+/config\ntopic read gridwatch/v1/s1/_uniforms/+/examples",
        "# server server\nuser server\ntopic read gridwatch/v1/+/+/+/events\ntopic read gridwatch/v1/+/+/status\n"
        "topic read gridwatch/v1/+/+/+/status\ntopic read gridwatch/v1/+/+/commands/ack\n"
        "topic write gridwatch/v1/+/+/commands\n"
        "topic write gridwatch/v1/+/_tickets/+/transitions\n"
        "topic write gridwatch/v1/+/+/+/config\ntopic write gridwatch/v1/+/_uniforms/+/examples\n",
    ]


def test_node_id_cannot_be_the_ticket_transitions_segment(site_dir: Path) -> None:
    """Ticket transitions sit at the node level (``<site>/_tickets/...``); no node may be named so."""
    result = run("add-node", "--dir", str(site_dir), "--site", "s1", "--node", "_tickets")
    assert result.exit_code != 0
    assert "not a valid id" in result.output
    assert not (site_dir / "clients" / "_tickets@s1").exists()


def test_one_user_name_one_principal(site_dir: Path) -> None:
    d = str(site_dir)
    assert run("add-node", "--dir", d, "--site", "s1", "--node", "gate").exit_code == 0
    again = run("add-integrator", "--dir", d, "--site", "s1", "--name", "gate")
    assert again.exit_code == 1
    assert "gate@s1 already exists" in again.output


def test_revoke_then_reissue(site_dir: Path) -> None:
    d = str(site_dir)
    run("add-node", "--dir", d, "--site", "s1", "--node", "gate")
    old = x509.load_pem_x509_certificate((site_dir / "clients" / "gate@s1" / "client.crt").read_bytes())
    revoked = run("revoke-node", "--dir", d, "--site", "s1", "--node", "gate")
    assert revoked.exit_code == 0
    assert "not running" in revoked.output  # nothing to reload, and it says so
    assert "gate@s1" not in (site_dir / "broker" / "passwd").read_text()
    assert "gate@s1" not in (site_dir / "broker" / "acl").read_text()
    assert not (site_dir / "clients" / "gate@s1").exists()
    assert run("revoke-node", "--dir", d, "--site", "s1", "--node", "gate").exit_code == 1

    assert run("add-node", "--dir", d, "--site", "s1", "--node", "gate").exit_code == 0
    new = x509.load_pem_x509_certificate((site_dir / "clients" / "gate@s1" / "client.crt").read_bytes())
    crl = x509.load_pem_x509_crl((site_dir / "broker" / "crl.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((site_dir / "ca" / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    assert crl.get_revoked_certificate_by_serial_number(old.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None
    assert crl.next_update_utc == ca.not_valid_after_utc  # an expired CRL would lock everyone out
    principals = json.loads((site_dir / "registry.json").read_text())["principals"]
    assert [p["revoked_at"] is None for p in principals] == [False, True]


def test_commands_need_an_initialised_directory(tmp_path: Path) -> None:
    result = run("add-server", "--dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "gridwatch broker init" in result.output
