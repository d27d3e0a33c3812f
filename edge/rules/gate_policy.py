"""Whether a recognised courier may come in through a gate: the site's policy, decided on the edge.

A policy names its factors: the ``uniform`` (an allowed company, recognised by the uniform
recogniser), a rider's ``code`` (a QR code the delivery platform issued, shown to the camera), the
company's ``words`` read off the person's jacket or box (edge/reading/logos.py), or several; all
must pass. Every factor is checked and reported, so the event says which passed and why one failed.

A rider code is ``<platform>.<expiry unix seconds>.<signature>``: the platform id (a uniform id in
the policy's ``allowed``), when it stops being valid, and the first ``SIGNATURE_HEX`` hex digits of
HMAC-SHA256 over ``<platform>.<expiry>`` with the site's code secret (shared with the platforms,
held in the environment variable the policy names, never in the config). It is short so the QR
code stays small enough to read at 60 px; 40 bits is plenty against guessing at a gate, where every
guess is a person showing a printed code. A code is good for one entry: a second use is refused.

The decision is pure (policy, factors' results, local time) so the courier rule can make it per
track and log it; opening the gate is the delivery stage's job (:mod:`~gridwatch.edge.delivery.gate`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime

from gridwatch.broker.zones import GatePolicy
from gridwatch.edge.rules.timewindows import in_windows

ALLOWED = "allowed"
PASSED = "passed"
SIGNATURE_HEX = 10


def _signature(platform: str, expiry: int, secret: str) -> str:
    message = f"{platform}.{expiry}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:SIGNATURE_HEX]


def issue_code(platform: str, expires_at: datetime, secret: str) -> str:
    """What a delivery platform puts in its rider's QR code (here for integrators and tests)."""
    expiry = int(expires_at.timestamp())
    return f"{platform}.{expiry}.{_signature(platform, expiry, secret)}"


def code_secret(policy: GatePolicy) -> str | None:
    return os.environ.get(policy.code_secret_env) or None


def check_code(payload: str, secret: str | None, at: datetime, used: set[str]) -> tuple[str, str | None]:
    """(``passed`` or why not, the code's platform): ``invalid_code`` (malformed or a wrong signature),
    ``expired_code``, ``replayed_code`` (already used for an entry), ``no_code_secret`` (the edge
    has no secret, so no code can pass)."""
    parts = payload.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return "invalid_code", None
    platform, expiry, signature = parts[0], int(parts[1]), parts[2]
    if secret is None:
        return "no_code_secret", platform
    if not hmac.compare_digest(signature, _signature(platform, expiry, secret)):
        return "invalid_code", None
    if at.timestamp() >= expiry:
        return "expired_code", platform
    if payload in used:
        return "replayed_code", platform
    return PASSED, platform


@dataclass(frozen=True)
class Verdict:
    """``decision`` is ``allowed`` or the first reason it is not; ``factors`` holds every factor's result."""

    decision: str
    factors: dict[str, str]

    @property
    def passed(self) -> tuple[str, ...]:
        return tuple(name for name, result in self.factors.items() if result == PASSED)


def entry_decision(policy: GatePolicy, uniform_id: str, at: datetime, code: str | None = None,
                   code_platform: str | None = None, words_company: str | None = None) -> Verdict:
    """Every factor the policy requires, then its time windows. ``code`` is the result of
    :func:`check_code` (None: no code was seen); a code must name an allowed platform. ``words_company``:
    the company the person's printed words name (None: none read), which must be allowed."""
    factors: dict[str, str] = {}
    if "uniform" in policy.factors:
        factors["uniform"] = (PASSED if uniform_id in policy.allowed
                              else "no_uniform" if not uniform_id else "company_not_allowed")
    if "code" in policy.factors:
        factors["code"] = ("no_code" if code is None else code if code != PASSED
                           else PASSED if code_platform in policy.allowed else "company_not_allowed")
    if "words" in policy.factors:
        factors["words"] = ("no_words" if words_company is None else PASSED if words_company in policy.allowed
                            else "company_not_allowed")
    factors = {name: factors[name] for name in policy.factors}  # reported in the policy's order
    failed = [result for result in factors.values() if result != PASSED]
    if failed:
        return Verdict(failed[0], factors)
    if not in_windows(policy.windows, at):
        return Verdict("outside_hours", factors)
    return Verdict(ALLOWED, factors)
