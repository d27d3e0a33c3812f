"""Multi-row INSERT … ON CONFLICT DO NOTHING, and multi-row UPDATE by key, that each stay one short
statement on PostgreSQL.

SQLAlchemy's "insertmanyvalues" turns a batch of 500 rows into a VALUES list thousands of
placeholders long; psycopg cannot cache a statement that long and re-parses it on every batch,
which cost a quarter of ingest's time (one array per column through ``unnest`` was slower still,
in psycopg's text escaping of every element). On PostgreSQL the rows go instead as one JSON
document, serialised by pydantic's Rust encoder and unpacked by ``json_to_recordset``: the statement
text is the same for every batch, so it is parsed once. Updates go the same way (``UPDATE … FROM
json_to_recordset``): one statement and one round trip for a batch's ticket summaries, where an
executemany sends one UPDATE per row. Other databases (SQLite in tests and the demo) keep the
portable path.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from gridwatch.server.db import insert_many_if_absent


def _document(rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON document. pydantic's Rust encoder writes aware datetimes as ISO 8601
    with their offset (PostgreSQL parses it) and is several times faster than ``json.dumps`` with a
    ``default`` hook, which is called back into Python for every datetime."""
    return pydantic_core.to_json(rows).decode()


def among(session: Session, column: Any, values: Collection[Any]) -> Any:
    """``column IN values`` as one array parameter on PostgreSQL (``= ANY(:values)``).

    An IN list renders one placeholder per value: a statement hundreds of values long that psycopg
    re-parses on every batch (it caches only short ones), a tenth of ingest's CPU. Other databases
    keep IN.
    """
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(list(values))
    return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def _recordset_types(table: sa.Table, names: list[str], dialect: sa.Dialect) -> str:
    return ", ".join(f'"{name}" {table.c[name].type.compile(dialect=dialect)}' for name in names)


def _recordset_insert(table: sa.Table, names: list[str], key: str, dialect: sa.Dialect) -> sa.TextClause:
    columns = ", ".join(f'"{name}"' for name in names)
    types = _recordset_types(table, names, dialect)
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
    return set(session.scalars(statement, {"rows": _document(rows)}).all())


def update_rows(session: Session, table: sa.Table, rows: list[dict[str, Any]], key: str) -> None:
    """UPDATE each row identified by its ``key`` column to its own values; every row has the same columns.

    Plain SQL, not the ORM's unit of work: ingest folds thousands of events into a few hundred
    summaries per batch, and loading, tracking and flushing ORM objects for them cost more than the
    database's own work. Rows the caller holds as ORM objects are not refreshed (see the caller).
    """
    if not rows:
        return
    names = list(rows[0])
    values = [name for name in names if name != key]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = (sa.update(table).where(table.c[key] == sa.bindparam("_key"))
                     .values({name: sa.bindparam(f"_v_{name}") for name in values}))
        session.execute(statement, [{"_key": row[key], **{f"_v_{name}": row[name] for name in values}}
                                    for row in rows])
        return
    assignments = ", ".join(f'"{name}" = r."{name}"' for name in values)
    statement = sa.text(f'UPDATE "{table.name}" AS t SET {assignments} FROM json_to_recordset(:rows) '
                        f'AS r({_recordset_types(table, names, dialect)}) WHERE t."{key}" = r."{key}"')
    session.execute(statement, {"rows": _document(rows)})


def insert_rows(session: Session, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
    """INSERT the rows (all with the same columns); their new ``id`` values, in the rows' order.

    On PostgreSQL one ``json_to_recordset`` statement inserts them in order; ids come from the
    table's sequence as the rows are inserted, so sorted ids are in the rows' order (the same
    assumption SQLAlchemy's own "sort by parameter order" makes for integer keys).
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return list(session.scalars(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows))
    names = list(rows[0])
    columns = ", ".join(f'"{name}"' for name in names)
    statement = sa.text(f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} FROM ROWS FROM '
                        f'(json_to_recordset(:rows) AS ({_recordset_types(table, names, dialect)})) '
                        f'WITH ORDINALITY AS r({columns}, n) ORDER BY n RETURNING "id"')
    return sorted(session.scalars(statement, {"rows": _document(rows)}).all())
