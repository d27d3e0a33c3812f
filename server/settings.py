"""Server configuration, read from ``GRIDWATCH_*`` environment variables or given explicitly.

One settings object is passed everywhere (CLI, ``gridwatch demo``, tests) so no module reads the
environment on its own and two servers in one process can run with different configurations.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridwatch.broker import topics


class ServerSettings(BaseSettings):
    """Where the server keeps its data, which broker it listens to and where it serves HTTP."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", extra="ignore")

    data_dir: Path = Field(Path("./gridwatch-data"), description="Database (SQLite) and snapshots.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://[user:pass@]host[:port] or mqtts://")
    mqtt_client_id: str = Field(
        "gridwatch-server",
        description="Stable on purpose: the broker keeps this client's QoS 1 queue while it is away.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port (tests, embedding).")
    events_subscription: str = topics.EVENTS_SUBSCRIPTION
    shared_group: str = Field(
        "", description="MQTT shared-subscription group ($share/<group>/...) so several server replicas "
        "split the stream; empty for a single server (the embedded amqtt broker has no shared subscriptions).",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
    )
    sla_sweep_interval_s: float = Field(10.0, gt=0, description="How often SLA clocks are checked.")
    publish_transitions: bool = Field(True, description="Publish every ticket transition over MQTT.")
    admin_password: str = Field(
        "", description="If set and no admin account exists, the server creates user 'admin' with this "
        "password at start (GRIDWATCH_ADMIN_PASSWORD). Otherwise use `gridwatch server add-user`.",
    )
    session_hours: float = Field(12.0, gt=0, description="How long a console login lasts (one shift).")
    cookie_secure: bool = Field(
        False, description="Always mark the session cookie Secure (it is already Secure on HTTPS requests); "
        "set it when a TLS proxy forwards plain HTTP to the server.",
    )
    anonymous_snapshot_upload: bool = Field(
        True, description="Accept PUT /api/snapshots/<sha256> without a token. Edge nodes without "
        "server.token in their config need it; turn it off once every node sends a snapshots:write token.",
    )
    login_attempts: int = Field(5, ge=1, description="Failed logins per address and per username ...")
    login_window_s: float = Field(300.0, gt=0, description="... within this many seconds before 429.")

    @model_validator(mode="after")
    def _default_database(self) -> ServerSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'gridwatch.db').resolve()}"
        return self

    @property
    def subscription(self) -> str:
        """The filter the ingest client subscribes to (shared when ``shared_group`` is set)."""
        if not self.shared_group:
            return self.events_subscription
        return f"$share/{self.shared_group}/{self.events_subscription}"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"
