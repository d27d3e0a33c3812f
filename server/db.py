"""Engines, sessions and schema upgrades for SQLite (default) and PostgreSQL.

Users never run Alembic by hand: the server calls :func:`upgrade` at start, with the migrations
shipped inside the package, so a ``pip install`` plus ``gridwatch server`` is the whole setup.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
MIGRATION_LOCK_KEY = 0x6772_6964  # "grid": the advisory lock replicas take around migrations


def normalize_url(database_url: str) -> str:
    """Map driverless PostgreSQL URLs to psycopg 3 (the driver the server extra installs)."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def create_engine(database_url: str, **kwargs: Any) -> sa.Engine:
    """An engine tuned for a server that writes from one thread and reads from many.

    SQLite gets WAL (readers never block the ingest writer), a busy timeout instead of instant
    "database is locked" errors, and enforced foreign keys; its parent directory is created.
    """
    url = make_url(normalize_url(database_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: objects stay readable after commit for serialising responses.
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` using the packaged migrations (no alembic.ini)."""
    # alembic announces each of its autogenerate plugins at INFO as it loads: noise here.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option, so '%' in passwords needs no escaping.
    config.attributes["database_url"] = normalize_url(database_url)
    if make_url(config.attributes["database_url"]).get_backend_name() != "postgresql":
        command.upgrade(config, revision)
    else:
        # Server replicas start together (a Kubernetes Deployment) and would all create the same
        # tables at once; a session advisory lock lets one migrate while the others wait, then find
        # the schema at head and do nothing.
        engine = create_engine(database_url, poolclass=sa.NullPool)
        try:
            with engine.connect() as lock:
                lock.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
                lock.commit()  # the lock is the session's; no open transaction may stall a migration
                command.upgrade(config, revision)
                lock.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
                lock.commit()
        finally:
            engine.dispose()
    log.info("database schema at %s", revision)


def current_revision(database_url: str) -> str | None:
    """The Alembic revision the database is at, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def insert_if_absent(session: Session, model: type[Any], values: dict[str, Any], key: str) -> bool:
    """INSERT unless a row with the same unique ``key`` exists; True if this call inserted it.

    Relies on the unique constraint, not on a prior SELECT, so two ingest workers (or servers)
    racing on the same row cannot both insert; on PostgreSQL the loser waits for the winner's commit.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
    # RETURNING, not rowcount: drivers disagree on rowcount once RETURNING is implicit.
    return session.execute(stmt.returning(sa.literal(1))).first() is not None


def insert_many_if_absent(session: Session, model: type[Any], rows: list[dict[str, Any]], key: str) -> set[Any]:
    """Multi-row :func:`insert_if_absent`; returns the ``key`` values this call inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__
    # One cached statement run as executemany: SQLAlchemy batches it into multi-row INSERTs
    # ("insertmanyvalues") without compiling a new statement for every batch size.
    stmt = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(session.scalars(stmt, rows))
