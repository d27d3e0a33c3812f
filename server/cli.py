"""``gridwatch server``: run ingest, the REST API and the console in one process.

Only click and the standard library are imported at module level: edge boxes install gridwatch
without the server extra and must still be able to load the ``gridwatch`` command.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("server")
@click.option("--db-url", help="SQLAlchemy database URL [env GRIDWATCH_DATABASE_URL; "
              "default: SQLite in the data dir]. PostgreSQL: postgresql+psycopg://user:pass@host/db")
@click.option("--mqtt-url", help="Broker to ingest events from [env GRIDWATCH_MQTT_URL; "
              "default mqtt://127.0.0.1:1883].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Database and snapshots [env GRIDWATCH_DATA_DIR; default ./gridwatch-data].")
@click.option("--host", help="HTTP bind address [env GRIDWATCH_HOST; default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="HTTP port [env GRIDWATCH_PORT; default 8000].")
def server(db_url: str | None, mqtt_url: str | None, data_dir: Path | None, host: str | None,
           port: int | None) -> None:
    """Ingest MQTT events into grid tickets and serve the API and console."""
    try:
        from gridwatch.broker.mqtt_url import parse_mqtt_url
        from gridwatch.server.api import create_app
        from gridwatch.server.runner import uvicorn_server
        from gridwatch.server.settings import ServerSettings
    except ImportError as exc:  # an edge-only install
        raise click.ClickException(
            f"the server needs the server extra: pip install 'gridwatch[server]' ({exc})"
        ) from None

    overrides = {"database_url": db_url, "mqtt_url": mqtt_url, "data_dir": data_dir,
                 "host": host, "port": port}
    settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    click.echo(f"GridWatch server on http://{settings.host}:{settings.port}/ "
               f"(events from {parse_mqtt_url(settings.mqtt_url).redacted_url})")
    uvicorn_server(create_app(settings), settings).run()
