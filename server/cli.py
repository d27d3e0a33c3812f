"""``gridwatch server``: run ingest, the REST API and the console in one process.

Only click and the standard library are imported at module level: edge boxes install gridwatch
without the server extra and must still be able to load the ``gridwatch`` command.
"""

from __future__ import annotations

from pathlib import Path

import click


def _server_modules() -> None:
    try:
        import gridwatch.server.api.app  # noqa: F401
    except ImportError as exc:  # an edge-only install
        raise click.ClickException(
            f"the server needs the server extra: pip install 'gridwatch[server]' ({exc})"
        ) from None


@click.group("server", invoke_without_command=True)
@click.pass_context
@click.option("--db-url", help="SQLAlchemy database URL [env GRIDWATCH_DATABASE_URL; "
              "default: SQLite in the data dir]. PostgreSQL: postgresql+psycopg://user:pass@host/db")
@click.option("--mqtt-url", help="Broker to ingest events from [env GRIDWATCH_MQTT_URL; "
              "default mqtt://127.0.0.1:1883].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Database and snapshots [env GRIDWATCH_DATA_DIR; default ./gridwatch-data].")
@click.option("--host", help="HTTP bind address [env GRIDWATCH_HOST; default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="HTTP port [env GRIDWATCH_PORT; default 8000].")
def server(ctx: click.Context, db_url: str | None, mqtt_url: str | None, data_dir: Path | None, host: str | None,
           port: int | None) -> None:
    """Ingest MQTT events into grid tickets and serve the API and console.

    The first admin comes from GRIDWATCH_ADMIN_PASSWORD (user ``admin``) or ``gridwatch server add-user``.
    """
    if ctx.invoked_subcommand is not None:
        return
    _server_modules()
    from gridwatch.broker.mqtt_url import parse_mqtt_url
    from gridwatch.server.api.app import create_app
    from gridwatch.server.runner import uvicorn_server
    from gridwatch.server.settings import ServerSettings

    overrides = {"database_url": db_url, "mqtt_url": mqtt_url, "data_dir": data_dir,
                 "host": host, "port": port}
    settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    click.echo(f"GridWatch server on http://{settings.host}:{settings.port}/ "
               f"(events from {parse_mqtt_url(settings.mqtt_url).redacted_url})")
    uvicorn_server(create_app(settings), settings).run()


@server.command("add-user")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["admin", "supervisor", "security", "grid_worker",
                                                          "department"]))
@click.option("--person-id", help="The registry person id this login acts as [default: the username].")
@click.option("--name", "display_name", default="", help="Name shown in the console.")
@click.option("--unit", help="The department id, for role department.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted when not given [env GRIDWATCH_NEW_PASSWORD].", envvar="GRIDWATCH_NEW_PASSWORD")
@click.option("--db-url", help="SQLAlchemy database URL [env GRIDWATCH_DATABASE_URL].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[env GRIDWATCH_DATA_DIR]")
def add_user(username: str, role: str, person_id: str | None, display_name: str, unit: str | None, password: str,
             db_url: str | None, data_dir: Path | None) -> None:
    """Create a console account (the database is migrated first)."""
    _server_modules()
    from gridwatch.server.clock import SystemClock
    from gridwatch.server.db import create_engine, session_factory, upgrade
    from gridwatch.server.registry.accounts import AccountError, create_account
    from gridwatch.server.settings import ServerSettings

    overrides = {"database_url": db_url, "data_dir": data_dir}
    settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            create_account(session, username=username, password=password, role=role, person_id=person_id or username,
                           display_name=display_name, unit=unit, now=SystemClock().now())
            session.commit()
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"created {role} account {username}")


@server.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would go.")
@click.option("--db-url", help="SQLAlchemy database URL [env GRIDWATCH_DATABASE_URL].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="[env GRIDWATCH_DATA_DIR]")
def purge(dry_run: bool, db_url: str | None, data_dir: Path | None) -> None:
    """Delete what is past its retention (GRIDWATCH_RETENTION_*_DAYS) and print the count per kind.

    The running server does the same every GRIDWATCH_RETENTION_PURGE_INTERVAL_S; this is for cron
    jobs, a first run after lowering a limit, or seeing what a limit would remove (--dry-run)."""
    _server_modules()
    from gridwatch.server.clock import SystemClock
    from gridwatch.server.db import create_engine, session_factory, upgrade
    from gridwatch.server.ingest.snapshots import SnapshotStore
    from gridwatch.server.privacy.retention import Policy
    from gridwatch.server.privacy.retention import purge as run_purge
    from gridwatch.server.settings import ServerSettings

    overrides = {"database_url": db_url, "data_dir": data_dir}
    settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            counts = run_purge(session, SnapshotStore(settings.snapshots_dir), Policy.from_settings(settings),
                               SystemClock().now(), dry_run=dry_run)
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    for kind, count in counts.items():
        click.echo(f"{kind}: {verb} {count}")
