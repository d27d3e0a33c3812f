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

    @model_validator(mode="after")
    def _default_database(self) -> ServerSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'gridwatch.db').resolve()}"
        return self

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"
