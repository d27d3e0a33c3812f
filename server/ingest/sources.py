"""Which broker feeds ingest: the one choice the server makes from its settings.

MQTT (one broker, or Mosquitto with shared subscriptions) by default; AMQP for the clustered
broker (``deploy/cluster/README.md``), imported only there so that pika is needed only there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from gridwatch.server.ingest.mqtt_source import MqttIngest
from gridwatch.server.ingest.store import Batch, IngestContext
from gridwatch.server.ingest.worker import IngestSource

if TYPE_CHECKING:
    from gridwatch.server.settings import ServerSettings


def create_ingest(
    settings: ServerSettings,
    *,
    session_factory: Callable[[], Session],
    context: IngestContext | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> IngestSource:
    """The ingest source the settings ask for: MQTT (one broker, or Mosquitto with shared
    subscriptions) or AMQP (the clustered broker, ``deploy/cluster/README.md``)."""
    if settings.ingest_source == "amqp":
        from gridwatch.server.ingest.amqp_source import AmqpIngest  # pika only where the cluster is used

        return AmqpIngest(urls=settings.amqp_url_list, queue_name=settings.amqp_queue,
                          session_factory=session_factory, context=context, on_batch=on_batch)
    return MqttIngest(mqtt_url=settings.mqtt_url, client_id=settings.mqtt_client_id,
                      subscription=settings.subscription, session_factory=session_factory, context=context,
                      on_batch=on_batch, tls=settings.mqtt_tls)
