"""Multi-row INSERT … ON CONFLICT DO NOTHING that stays one short statement on PostgreSQL.

SQLAlchemy's "insertmanyvalues" turns a batch of 500 rows into a VALUES list thousands of
placeholders long; psycopg cannot cache a statement that long and re-parses it on every batch,
which cost a quarter of ingest's time (one array per column through ``unnest`` was slower still,
in psycopg's text escaping of every element). On PostgreSQL the rows go instead as one JSON
document, serialised by the C json encoder and unpacked by ``json_to_recordset``: the statement
text is the same for every batch, so it is parsed once. Other databases (SQLite in tests and the
demo) keep the portable path.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.server.db import insert_many_if_absent


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # aware datetimes keep their offset; PostgreSQL parses ISO 8601
    raise TypeError(f"cannot store {type(value).__name__} in a bulk insert")


def _recordset_insert(table: sa.Table, names: list[str], key: str, dialect: sa.Dialect) -> sa.TextClause:
    columns = ", ".join(f'"{name}"' for name in names)
    types = ", ".join(f'"{name}" {table.c[name].type.compile(dialect=dialect)}' for name in names)
    return sa.text(f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} FROM json_to_recordset(:rows) '
                   f'AS r({types}) ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"')


def insert_absent(session: Session, model: type[Any], rows: list[dict[str, Any]], key: str) -> set[Any]:
    """INSERT the rows whose unique ``key`` is new; return the ``key`` values this call inserted.

    Every row must have the same columns. Relies on the unique constraint, not a prior SELECT, so
    concurrent ingest workers cannot both insert one row.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return insert_many_if_absent(session, model, rows, key)
    statement = _recordset_insert(model.__table__, list(rows[0]), key, dialect)
    return set(session.scalars(statement, {"rows": json.dumps(rows, default=_json_default)}))
