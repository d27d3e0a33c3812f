"""Alembic environment for the packaged migrations.

The server runs it programmatically (``gridwatch.server.db.upgrade``), passing the URL as the
``database_url`` config attribute; developers running the ``alembic`` command against
``server/alembic.ini`` get the URL from ``GRIDWATCH_DATABASE_URL`` / ``ServerSettings`` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from gridwatch.server.db import create_engine, normalize_url
from gridwatch.server.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from gridwatch.server.settings import ServerSettings

        url = ServerSettings().database_url
    return normalize_url(url)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later migrations.
        render_as_batch=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
