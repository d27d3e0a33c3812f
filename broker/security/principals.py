"""Who may connect to the broker: nodes, servers and integrators, and the names they connect as.

A principal's MQTT user name is also its client id (the broker forces that, so one principal cannot
knock another off by reusing its client id) and the CN of its certificate. Every id in it passes
``topics.check_id`` first: the ids become topic segments in the ACL, and a ``+``, ``#`` or ``/``
inside one would widen what the ACL grants (CVE-2017-7650).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.broker.topics import check_id


class Kind(StrEnum):
    NODE = "node"
    SERVER = "server"
    INTEGRATOR = "integrator"


class Principal(BaseModel):
    """One issued identity. Revoked ones stay in the registry: their serials make up the CRL."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    name: str = Field(description="node id, server name or integrator name")
    site_id: str | None = Field(None, description="the site a node or integrator belongs to; none for a server")
    cert_serial: int
    password_hash: str
    issued_at: datetime
    revoked_at: datetime | None = None

    @model_validator(mode="after")
    def _ids_are_safe(self) -> Principal:
        check_id(f"{self.kind} name", self.name)
        if (self.site_id is None) != (self.kind is Kind.SERVER):
            raise ValueError("nodes and integrators belong to a site; servers do not")
        if self.site_id is not None:
            check_id("site_id", self.site_id)
        return self

    @property
    def username(self) -> str:
        return username(self.kind, self.name, self.site_id)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def username(kind: Kind, name: str, site_id: str | None) -> str:
    """``<name>@<site>`` for nodes and integrators, ``<name>`` for servers.

    ``@`` can never occur in an id, so a user name decodes to exactly one (name, site) and a server
    name can never look like a node. A node and an integrator of one site share the name space.
    """
    check_id(f"{kind} name", name)
    if site_id is None:
        return name
    return f"{name}@{check_id('site_id', site_id)}"


class Registry(BaseModel):
    """The broker directory's ``registry.json``: the listener settings and every principal issued."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    hostnames: list[str] = Field(min_length=1)
    tls_port: int = Field(ge=1, le=65535)
    tls_address: str | None = None
    local_port: int | None = Field(None, ge=1, le=65535)
    run_as: str
    principals: list[Principal] = []

    def active(self) -> list[Principal]:
        return [p for p in self.principals if p.active]

    def find_active(self, name: str) -> Principal | None:
        return next((p for p in self.active() if p.username == name), None)
