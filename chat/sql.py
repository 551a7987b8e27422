"""The writes every turn makes, as single SQL statements without the ORM's query compiler.

A turn runs two transactions, at its start and at its end. Through `Model.objects.create()`,
`bulk_create()` and `QuerySet.update()` they cost 0.95 ms of Python for a turn of a new
conversation; the same statements with the same values built here cost 0.25 ms. In a loaded
server that Python runs on the database thread, holding the GIL while every stream waits, and
it cost about three times as much: at K = 200 streams of 200 chunks the server spent 12 µs a
chunk less (`bench.ab`, 7.5% of its CPU).

Values are prepared by each field as the ORM prepares them (`pre_save`, then
`get_db_prep_save` or, in a WHERE, `get_db_prep_value`), and names come from the models'
metadata, so rows are stored exactly as the ORM stores them on SQLite and on PostgreSQL.
Reads and the rare writes stay on the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model


@lru_cache(maxsize=64)
def _insert_statement(model: type[Model], rows: int, vendor: str) -> tuple[str, tuple[Field[Any, Any], ...]]:
    """The INSERT of `rows` rows and the fields it writes: all but a primary key the database
    numbers (an AutoField)."""
    fields = tuple(field for field in model._meta.concrete_fields if not (field.primary_key and field.db_returning))
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Only quoted names from the model's metadata are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)}"
    )
    return sql, fields


@lru_cache(maxsize=64)
def _update_statement(model: type[Model], values: tuple[str, ...], where: tuple[str, ...], vendor: str) -> str:
    meta, quote = model._meta, connections[DEFAULT_DB_ALIAS].ops.quote_name
    assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in values)
    conditions = " AND ".join(f"{quote(meta.get_field(name).column)} = %s" for name in where)
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {conditions}"  # noqa: S608


@lru_cache(maxsize=64)
def _select_statement(model: type[Model], name: str, where: tuple[str, ...], order_by: str | None, vendor: str) -> str:
    meta, quote = model._meta, connections[DEFAULT_DB_ALIAS].ops.quote_name
    conditions = " AND ".join(f"{quote(meta.get_field(field).column)} = %s" for field in where)
    sql = f"SELECT {quote(meta.get_field(name).column)} FROM {quote(meta.db_table)} WHERE {conditions}"  # noqa: S608
    return sql + (f" ORDER BY {quote(meta.get_field(order_by).column)}" if order_by else "")


def _connection() -> BaseDatabaseWrapper:
    # Looked up once a call: each attribute of `django.db.connection` is a context-local lookup.
    return connections[DEFAULT_DB_ALIAS]


def objects_insert(objects: Sequence[Model]) -> None:
    """Insert new instances of one model with one statement. Database-numbered primary keys are
    not read back (the callers have no use for them)."""
    if not objects:
        return
    connection = _connection()
    sql, fields = _insert_statement(type(objects[0]), len(objects), connection.vendor)
    values: list[Any] = []
    for instance in objects:
        values += [field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields]
        instance._state.adding = False
        instance._state.db = connection.alias
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def rows_update(model: type[Model], *, where: dict[str, Any], values: dict[str, Any]) -> int:
    """`UPDATE … SET values WHERE` each field in `where` equals its value; the rows changed.
    Keys are field names (`attname`s for foreign keys)."""
    connection, meta = _connection(), model._meta
    sql = _update_statement(model, tuple(values), tuple(where), connection.vendor)
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    params += [meta.get_field(name).get_db_prep_value(value, connection) for name, value in where.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def column_values(model: type[Model], name: str, *, where: dict[str, Any], order_by: str | None = None) -> list[Any]:
    """One column of the rows where each field in `where` equals its value, converted to Python
    by the backend's and the field's converters, as `values_list(name, flat=True)` does."""
    connection, meta = _connection(), model._meta
    sql = _select_statement(model, name, tuple(where), order_by, connection.vendor)
    params = [meta.get_field(field).get_db_prep_value(value, connection) for field, value in where.items()]
    column = meta.get_field(name).get_col(meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        values = [row[0] for row in cursor.fetchall()]
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
        values = [converter(value, column, connection) for value in values]
    return values
