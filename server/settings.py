"""Server configuration, read from ``GRIDWATCH_*`` environment variables or given explicitly.

One settings object is passed everywhere (CLI, ``gridwatch demo``, tests) so no module reads the
environment on its own and two servers in one process can run with different configurations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridwatch.broker import topics
from gridwatch.broker.mqtt_url import TlsFiles


class ServerSettings(BaseSettings):
    """Where the server keeps its data, which broker it listens to and where it serves HTTP."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", extra="ignore")

    data_dir: Path = Field(Path("./gridwatch-data"), description="Database (SQLite) and snapshots.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://[user:pass@]host[:port] or mqtts://")
    mqtt_ca_file: str | None = Field(None, description="PEM CA bundle of an mqtts:// broker with a private CA.")
    mqtt_cert_file: str | None = Field(None, description="PEM client certificate for an mqtts:// broker.")
    mqtt_key_file: str | None = Field(None, description="PEM key of mqtt_cert_file, unless that file holds it.")
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
    # -- district scale: a clustered broker (deploy/cluster/README.md, server/ingest/amqp_source.py)
    ingest_source: Literal["mqtt", "amqp"] = Field(
        "mqtt", description="Where events come from: 'mqtt' (mqtt_url, one broker) or 'amqp' (the clustered "
        "RabbitMQ's quorum queue, shared by every replica; camera status and transitions still use mqtt_url).",
    )
    amqp_urls: str = Field(
        "", description="Comma-separated amqp://user:pass@host:port/vhost of the cluster's nodes, tried in turn.",
    )
    amqp_queue: str = Field("gridwatch.events", pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
                            description="The quorum queue the replicas share.")
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
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or networks (JSON list, e.g. [\"10.0.0.5\", \"10.1.0.0/16\"]) "
        "of TLS proxies whose X-Forwarded-Proto and X-Forwarded-For are believed: the session cookie is then "
        "Secure and HSTS is sent for their HTTPS clients. Empty: no forwarded header is believed.",
    )
    anonymous_snapshot_upload: bool = Field(
        True, description="Accept PUT /api/snapshots/<sha256> without a token. Edge nodes without "
        "server.token in their config need it; turn it off once every node sends a snapshots:write token.",
    )
    login_attempts: int = Field(5, ge=1, description="Failed logins per address and per username ...")
    login_window_s: float = Field(300.0, gt=0, description="... within this many seconds before 429.")
    # -- Open311 GeoReport v2 (server/integrations/open311.py)
    open311_public_read: bool = Field(
        False, description="Anyone may read services and requests of the categories the table marks public "
        "(GeoReport's public model; times to the hour, no evidence, assignee or camera). Off (the default): "
        "reads need api_key = a token with scope read.",
    )
    open311_jurisdiction: str = Field(
        "", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$",
        description="The site a POSTed request belongs to when it names no jurisdiction_id.",
    )
    # -- outbound webhooks (server/integrations/webhooks.py)
    webhook_poll_s: float = Field(1.0, gt=0, description="How often the delivery worker looks for due deliveries.")
    webhook_timeout_s: float = Field(10.0, gt=0, description="Per HTTP attempt.")
    webhook_backoff_s: float = Field(10.0, gt=0, description="Wait before the first retry; doubled after each.")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="Longest wait between two attempts.")
    webhook_max_attempts: int = Field(10, ge=1, description="Then the delivery is marked failed.")
    webhook_allow_private_targets: bool = Field(
        False, description="Allow webhook URLs on loopback, private and link-local addresses (an in-house receiver). "
                           "Off by default: the server would otherwise POST into its own network for whoever holds "
                           "an admin session (SSRF).")
    # -- retention per data kind, in days; 0 keeps forever (server/privacy/retention.py)
    retention_events_days: int = Field(365, ge=0, description="Events of closed or suppressed situations.")
    retention_snapshots_days: int = Field(180, ge=0, description="Snapshot files not evidence of an open ticket.")
    retention_audit_days: int = Field(1095, ge=0, description="Audit trail of tickets closed this long ago.")
    retention_dead_letters_days: int = Field(30, ge=0, description="Refused messages.")
    retention_evidence_log_days: int = Field(365, ge=0, description="Who viewed which evidence.")
    retention_webhook_deliveries_days: int = Field(30, ge=0, description="Finished webhook deliveries and attempts.")
    retention_plates_days: int = Field(
        30, ge=0, description="Plate numbers (and crops, and the owner notified) on tickets closed this long ago.")
    retention_purge_interval_s: float = Field(3600.0, gt=0, description="How often the server purges.")
    # -- privacy of stored images (server/privacy/blur_policy.py)
    privacy_require_face_blur: bool = Field(
        False, description="Refuse snapshot uploads whose faces are not blurred: an upload must carry the edge's blur "
                           "manifest (X-GridWatch-Blur) naming the face model and policy, and where OpenCV is "
                           "installed the server also looks for sharp faces itself. Off: uploads are stored as sent.")
    privacy_face_check: bool = Field(
        True, description="With blur required, also run the face model on each upload where OpenCV and the model "
                          "are installed (the server extra has neither: then the manifest alone decides).")

    @model_validator(mode="after")
    def _default_database(self) -> ServerSettings:
        if self.ingest_source == "amqp" and not self.amqp_url_list:
            raise ValueError("amqp_urls: ingest_source 'amqp' needs at least one amqp:// URL")
        bad = [u for u in self.amqp_url_list if not u.startswith(("amqp://", "amqps://"))]
        if bad:
            raise ValueError(f"amqp_urls: not an amqp:// or amqps:// URL: {bad[0]}")
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'gridwatch.db').resolve()}"
        return self

    @property
    def subscription(self) -> str:
        """The filter the ingest client subscribes to (shared when ``shared_group`` is set)."""
        if not self.shared_group:
            return self.events_subscription
        return f"$share/{self.shared_group}/{self.events_subscription}"

    @model_validator(mode="after")
    def _tls_files_exist(self) -> ServerSettings:
        try:
            self.mqtt_tls  # noqa: B018 -- TlsFiles checks its files when made
        except ValueError as exc:  # "ca_file: no such file ..." -> the setting's own name
            raise ValueError(f"mqtt_{exc}") from None
        return self

    @property
    def mqtt_tls(self) -> TlsFiles:
        """The TLS files for the broker connection, for every MQTT client of the server."""
        return TlsFiles(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)

    @property
    def amqp_url_list(self) -> list[str]:
        return [u.strip() for u in self.amqp_urls.split(",") if u.strip()]

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"
