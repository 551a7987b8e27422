"""A fast path (FAST_PATHS): the statements every turn runs, without the ORM's query compiler.
With FAST_PATHS off, each function here makes the same change through the ORM instead.

A turn runs two transactions, at its start and at its end. Through `Model.objects.create()`,
`bulk_create()`, `QuerySet.update()` and `values_list()` they cost 1.0 ms of Python for a
conversation's first turn and 1.3 ms for a later one; the same statements built here cost
0.45 ms. In a loaded server that Python runs on the database thread, holding the GIL while
every stream waits, and the server saved twice what the statements did: a one-chunk turn at
K = 200 took 6.0 ms of its CPU before and 4.6 ms after (`bench.ab`, six rounds).

Values are prepared by each field as the ORM prepares them (`pre_save`, then
`get_db_prep_save`, or `get_db_prep_value` in a WHERE) and read back through the backend's and
the field's converters; names come from the models' metadata. So rows are stored and read
exactly as the ORM stores and reads them, on SQLite and on PostgreSQL. Everything else (the
rare writes, the API's reads) stays on the ORM. It relies on Django's model metadata and on
`Model._state`: tests/chat/test_private_api.py fails, naming them, if they move.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model


def _connection() -> BaseDatabaseWrapper:
    # Looked up once a call: each attribute of `django.db.connection` is a context-local lookup.
    return connections[DEFAULT_DB_ALIAS]


# Each statement is built once per shape; `vendor` is in each cache key because quoting is the
# backend's.


@lru_cache(maxsize=16)
def _insert_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    """The fields an insert writes: all but a primary key the database numbers (an AutoField)."""
    return tuple(field for field in model._meta.concrete_fields if not (field.primary_key and field.db_returning))


@lru_cache(maxsize=64)
def _insert_statement(model: type[Model], rows: int, ignore_conflicts: bool, vendor: str) -> str:
    """The INSERT of `rows` rows."""
    fields = _insert_fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Only quoted names from the model's metadata are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {_quote(model._meta.db_table)} ({', '.join(_quote(field.column) for field in fields)}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)}"
    )
    if ignore_conflicts:  # SQLite (3.24+) and PostgreSQL spell it the same
        sql += " ON CONFLICT DO NOTHING"
    return sql


def _quote(name: str) -> str:
    """A table's or column's name as the backend quotes it."""
    return _connection().ops.quote_name(name)


def _column(model: type[Model], name: str) -> str:
    return _quote(model._meta.get_field(name).column)


def _placeholders(model: type[Model], names: tuple[str, ...], joiner: str) -> str:
    """`"a" = %s` for each field, joined: a SET list (", ") or a WHERE clause (" AND ")."""
    return joiner.join(f"{_column(model, name)} = %s" for name in names)


@lru_cache(maxsize=64)
def _update_statement(model: type[Model], values: tuple[str, ...], where: tuple[str, ...], vendor: str) -> str:
    table = _quote(model._meta.db_table)
    return f"UPDATE {table} SET {_placeholders(model, values, ', ')} WHERE {_placeholders(model, where, ' AND ')}"  # noqa: S608


@lru_cache(maxsize=64)
def _select_statement(
    model: type[Model], names: tuple[str, ...], where: tuple[str, ...], order_by: str | None, vendor: str
) -> str:
    table = _quote(model._meta.db_table)
    columns = ", ".join(_column(model, name) for name in names)
    sql = f"SELECT {columns} FROM {table} WHERE {_placeholders(model, where, ' AND ')}"  # noqa: S608
    return sql + (f" ORDER BY {_column(model, order_by)}" if order_by else "")


def _where_params(model: type[Model], where: dict[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
    """The values of a WHERE clause, prepared as the ORM prepares an exact lookup's."""
    return [model._meta.get_field(name).get_db_prep_value(value, connection) for name, value in where.items()]


def objects_insert(objects: Sequence[Model], *, ignore_conflicts: bool = False) -> int:
    """Insert new instances of one model, in one statement unless they need more parameters
    than the backend takes (SQLite builds take as few as 999; then in batches, as `bulk_create`
    splits them); the rows inserted. With `ignore_conflicts`, a row whose unique key is taken is
    skipped instead of failing. Database-numbered primary keys are not read back (the callers
    have no use for them)."""
    if not objects:
        return 0
    if not settings.FAST_PATHS:
        return _orm_insert(objects, ignore_conflicts)
    connection, model = _connection(), type(objects[0])
    fields = _insert_fields(model)
    batch = connection.ops.bulk_batch_size(fields, objects)
    inserted = 0
    for start in range(0, len(objects), batch):
        rows = objects[start : start + batch]
        values: list[Any] = []
        for instance in rows:
            values += [field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields]
            instance._state.adding = False
            instance._state.db = connection.alias
        with connection.cursor() as cursor:
            cursor.execute(_insert_statement(model, len(rows), ignore_conflicts, connection.vendor), values)
            inserted += cursor.rowcount
    return inserted


def rows_update(model: type[Model], *, where: dict[str, Any], values: dict[str, Any]) -> int:
    """`UPDATE … SET values WHERE` each field in `where` equals its value; the rows changed.
    Keys are field names (`attname`s for foreign keys)."""
    if not settings.FAST_PATHS:
        return model._default_manager.filter(**where).update(**values)
    connection, meta = _connection(), model._meta
    sql = _update_statement(model, tuple(values), tuple(where), connection.vendor)
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    params += _where_params(model, where, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def column_values(model: type[Model], name: str, *, where: dict[str, Any], order_by: str | None = None) -> list[Any]:
    """One column of the rows where each field in `where` equals its value, converted to Python
    by the backend's and the field's converters, as `values_list(name, flat=True)` does."""
    return [row[0] for row in rows_values(model, (name,), where=where, order_by=order_by)]


def rows_values(
    model: type[Model], names: tuple[str, ...], *, where: dict[str, Any], order_by: str | None = None
) -> list[tuple[Any, ...]]:
    """Columns of the rows where each field in `where` equals its value, converted to Python
    by the backend's and the fields' converters, as `values_list(*names)` does."""
    if not settings.FAST_PATHS:
        rows = model._default_manager.filter(**where).order_by(*([order_by] if order_by else []))
        return list(rows.values_list(*names))
    connection, meta = _connection(), model._meta
    sql = _select_statement(model, names, tuple(where), order_by, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, _where_params(model, where, connection))
        columns = list(zip(*cursor.fetchall(), strict=True)) or [() for _ in names]
    for index, name in enumerate(names):
        column = meta.get_field(name).get_col(meta.db_table)
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            columns[index] = [converter(value, column, connection) for value in columns[index]]
    return list(zip(*columns, strict=True))


def _orm_insert(objects: Sequence[Model], ignore_conflicts: bool) -> int:
    """The stock path of `objects_insert`: `save()` or `bulk_create()`; a row whose unique key
    is taken is skipped in a savepoint of its own, as `create()` callers do."""
    if not ignore_conflicts:
        if len(objects) == 1:
            objects[0].save(force_insert=True)
        else:
            type(objects[0])._default_manager.bulk_create(objects)
        return len(objects)
    inserted = 0
    for instance in objects:
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
        except IntegrityError:
            continue
        inserted += 1
    return inserted
