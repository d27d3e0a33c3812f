"""Webhooks connect to the address that was checked (no DNS rebinding), on loopback.

No DNS server runs here, so the name's resolution is the one stand-in: a resolver answering
127.0.0.2 the first time it is asked and 127.0.0.1 after, with 127.0.0.2 counted as public. Two
real receivers listen on the same port, one per address; the delivery must reach the one that
was checked, and the other must hear nothing, also when the first answers with a redirect.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gridwatch.server.integrations.webhooks import IPAddress, attempt, pin

CHECKED, REBOUND = "127.0.0.2", "127.0.0.1"
NAME = "hooks.integrator.example"


@dataclass
class Receiver:
    address: str
    port: int
    redirect_to: str | None = None
    hosts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hosts.append(self.headers["Host"])
                self.send_response(307 if receiver.redirect_to else 200)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.address, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    checked = Receiver(CHECKED, 0)
    for _ in range(20):  # the same port on the other address; another process may hold it
        try:
            rebound = Receiver(REBOUND, checked.server.server_address[1])
            break
        except OSError:
            checked.stop()
            checked = Receiver(CHECKED, 0)
    else:
        pytest.fail("no port free on both loopback addresses")
    yield checked, rebound
    checked.stop()
    rebound.stop()


class Rebinding:
    """What a hostile DNS server does: a public-looking answer first, the internal address after."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, host: str) -> list[str]:
        assert host == NAME
        self.asked += 1
        return [CHECKED] if self.asked == 1 else [REBOUND]


def public(address: IPAddress) -> bool:
    """127.0.0.2 stands in for a public address; everything else keeps the real rule."""
    return address == ipaddress.ip_address(CHECKED) or address.is_global


def test_the_delivery_goes_to_the_address_that_was_checked(receivers: tuple[Receiver, Receiver]) -> None:
    checked, rebound = receivers
    port = checked.server.server_address[1]
    resolver = Rebinding()
    outcome, final = attempt(f"http://{NAME}:{port}/hook?x=1", "secret", 1, b"{}", 5, allow_private=False,
                             resolver=resolver, public=public)
    assert outcome.ok and not final, outcome
    assert resolver.asked == 1  # one answer, checked and used
    assert checked.hosts == [f"{NAME}:{port}"] and rebound.hosts == []

    # the next attempt asks again, gets the internal address, and is refused without connecting
    refused, final = attempt(f"http://{NAME}:{port}/hook", "secret", 2, b"{}", 5, allow_private=False,
                             resolver=resolver, public=public)
    assert final and refused.error is not None and REBOUND in refused.error
    assert rebound.hosts == []


def test_a_redirect_to_a_refused_address_is_not_followed(receivers: tuple[Receiver, Receiver]) -> None:
    checked, rebound = receivers
    port = checked.server.server_address[1]
    checked.redirect_to = f"http://{REBOUND}:{port}/hook"
    outcome, final = attempt(f"http://{NAME}:{port}/hook", "secret", 3, b"{}", 5, allow_private=False,
                             resolver=Rebinding(), public=public)
    assert outcome.status_code == 307 and not outcome.ok and not final
    assert len(checked.hosts) == 1 and rebound.hosts == []


def test_a_name_that_does_not_resolve_is_retried_not_refused() -> None:
    def nowhere(_host: str) -> list[str]:
        raise OSError("Name or service not known")

    target = pin("http://nowhere.invalid/hook", allow_private=False, resolver=nowhere)
    assert target.address is None and target.refusal is None and "nowhere.invalid" in (target.error or "")
    outcome, final = attempt("http://nowhere.invalid/hook", "s", 4, b"{}", 5, allow_private=False, resolver=nowhere)
    assert not outcome.ok and not final
