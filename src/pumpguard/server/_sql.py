"""Dialect-specific SQL the services share.

On PostgreSQL, a batch travels as one array per column (``unnest``) and list membership as
``= ANY(array)``: the statement text stays short and identical from batch to batch, so the
driver parses it once instead of rebuilding thousands of placeholders per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["in_values", "insert_ignoring_conflicts", "insert_rows_ignoring_conflicts"]


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"pumpguard supports SQLite and PostgreSQL, not {name}")
    return name


def insert_ignoring_conflicts(session: Session, model: Any, index_elements: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` in the session's dialect."""
    if _dialect(session) == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite.insert(model).on_conflict_do_nothing(index_elements=index_elements)


def insert_rows_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    index_elements: list[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys), skipping conflicts; the ``returning`` columns
    of the rows actually inserted."""
    if not rows:
        return []
    columns = list(rows[0])
    connection = session.connection()
    if _dialect(session) == "postgresql":
        arrays = [
            func.unnest(
                bindparam(
                    f"a_{name}",
                    [row[name] for row in rows],
                    type_=postgresql.ARRAY(table.c[name].type),
                )
            )
            for name in columns
        ]
        statement: Any = (
            postgresql.insert(table)
            .from_select(columns, select(*arrays))
            .on_conflict_do_nothing(index_elements=index_elements)
        )
        if returning:
            statement = statement.returning(*(table.c[name] for name in returning))
            return [tuple(r) for r in connection.execute(statement)]
        connection.execute(statement)
        return []
    statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
        return [tuple(r) for r in connection.execute(statement, list(rows))]
    connection.execute(statement, list(rows))
    return []


def in_values(
    session: Session, column: InstrumentedAttribute[Any] | ColumnElement[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN values``, as ``column = ANY(:array)`` on PostgreSQL."""
    listed = list(values)
    if _dialect(session) == "postgresql":
        array = bindparam(None, listed, type_=postgresql.ARRAY(column.type))
        return column == any_(array)
    return column.in_(listed)
