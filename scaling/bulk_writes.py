"""Bulk writes for the control loop: some columns of many rows, in one statement.

Django's ``bulk_update`` writes a CASE with one WHEN per row and field; for the 1,000 statuses
of a tick that took ~1 s to build and run on PostgreSQL, most of the tick. Rows of VALUES
joined on the primary key do the same in tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connection, models

BATCH = 1000


def update_columns(objects: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of ``objects`` (all of one model) as they are in memory: one
    ``UPDATE ... FROM (VALUES ...)`` per BATCH rows (PostgreSQL, and SQLite since 3.33)."""
    if not objects:
        return
    meta = objects[0]._meta
    fields = [cast("models.Field[Any, Any]", meta.get_field(name)) for name in field_names]
    pk = cast("models.Field[Any, Any]", meta.pk)
    quote = connection.ops.quote_name
    # PostgreSQL types a VALUES column from its rows; say it (a column of NULLs is text).
    typed = connection.vendor == "postgresql"

    def slot(field: models.Field[Any, Any]) -> str:
        return f"CAST(%s AS {field.db_type(connection)})" if typed else "%s"

    row = ", ".join([slot(pk)] + [slot(f) for f in fields])
    assignments = ", ".join(
        f"{quote(f.column)} = v.column{i}" for i, f in enumerate(fields, start=2)
    )
    table = quote(meta.db_table)
    for start in range(0, len(objects), BATCH):
        batch = objects[start : start + BATCH]
        params: list[Any] = []
        for obj in batch:
            params.append(obj.pk)
            params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)
        values = ", ".join(f"({row})" for _ in batch)
        sql = (
            f"UPDATE {table} SET {assignments} FROM (VALUES {values}) AS v "
            f"WHERE {table}.{quote(pk.column)} = v.column1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
