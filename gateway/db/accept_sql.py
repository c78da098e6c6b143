"""Accepting a gateway-key request in ONE SQL statement on PostgreSQL (the common case).

Why this exists: every ``/v1/chat/completions`` request first authenticates its key and writes its
pending log row. Through the ORM that is two or three autocommitted statements (the key's SELECT, the
once-a-minute ``last_used_at`` UPDATE, the log INSERT), and building them cost more CPU than
PostgreSQL took to run them (bench/README.md, "Numbers behind the code"). Here
they are one statement with data-modifying CTEs, in autocommit (no BEGIN/COMMIT)::

    WITH k AS (SELECT <the active key by hash>),
         upd AS (UPDATE <its last_used_at, when a minute old>),
         ins AS (INSERT <the log row> SELECT ... FROM k WHERE <no limits, the model allowed> RETURNING id)
    SELECT <k's columns>, ins.id FROM k LEFT JOIN ins ON TRUE

It writes the log row only when nothing is left to decide in Python: the key has no ``rpm_limit``, no
``max_concurrent`` and no ``turns_per_day`` (those are counted under a row lock in ``request_log_accept``) and its
allow-list is empty or names the model exactly (a match by canonical name needs ``parse_model``). In
any other case the key comes back without a log row and ``gateway.chat.accept`` continues on the ORM path,
with the key already authenticated. The rules stay where they were: the key's hash and the
``last_used_at`` rule in gateway.records.keys, the row's contents in ``gateway.records.logs.request_log_accept_fields``.
SQLite always takes the ORM path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Field, Model

from gateway.db import eventloop, run
from gateway.models import ApiKey, RequestLog
from gateway.records.keys import LAST_USED_RESOLUTION, api_key_last_used_stale
from gateway.records.logs import LogStart, request_log_accept_fields


@dataclasses.dataclass(frozen=True)
class FastAccept:
    key: ApiKey | None  # None: no active key has this hash (unknown or revoked)
    log_id: int | None  # None: the key needs the ORM path (limits, allow-list by canonical name)


@dataclasses.dataclass(frozen=True)
class _Statement:
    sql: str
    key_names: list[str]  # ApiKey field attnames, in the order of the result columns
    key_converters: list[list[Callable[..., Any]]]  # as the ORM's: from_db_value (JSONField: text -> list)
    log_fields: list[Field[Any, Any]]  # RequestLog fields written from parameters, in placeholder order


def fast_accept_supported() -> bool:
    return eventloop.is_postgresql()


# {names} are quoted table/column names from the models' metadata; every value is a %s parameter.
_ACCEPT_SQL = """
WITH k AS (
    SELECT {key_columns} FROM {key_table} WHERE {key_hash} = %s AND {revoked_at} IS NULL
), upd AS (
    UPDATE {key_table} AS a SET {last_used_at} = %s FROM k
    WHERE a.{key_pk} = k.{key_pk} AND (a.{last_used_at} IS NULL OR a.{last_used_at} <= %s)
), ins AS (
    INSERT INTO {log_table} ({log_api_key}, {log_columns})
    SELECT k.{key_pk}, {log_values} FROM k
    WHERE k.{rpm_limit} IS NULL AND k.{max_concurrent} IS NULL AND k.{turns_per_day} IS NULL
        AND (k.{allowed_models} = '[]'::jsonb OR k.{allowed_models} @> jsonb_build_array(%s::text))
    RETURNING {log_pk}
)
SELECT {k_key_columns}, ins.{log_pk} FROM k LEFT JOIN ins ON TRUE
"""


_KEY_COLUMNS_USED = (
    "key_hash", "revoked_at", "last_used_at", "rpm_limit", "max_concurrent", "turns_per_day", "allowed_models",
)  # fmt: skip


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column
    return connection.ops.quote_name(field.column)


@functools.cache
def _statement() -> _Statement:
    """The statement, built once from the models' metadata."""
    qn = connection.ops.quote_name
    key_meta, log_meta = ApiKey._meta, RequestLog._meta
    key_fields = list(key_meta.concrete_fields)
    log_key = log_meta.get_field("api_key")
    # Every other column gets its value (or the field's default) as a parameter, as the ORM's INSERT does.
    log_fields = [f for f in log_meta.concrete_fields if not f.primary_key and f is not log_key]
    names = {name: _column(ApiKey, name) for name in _KEY_COLUMNS_USED}
    sql = _ACCEPT_SQL.format(  # noqa: S608
        key_table=qn(key_meta.db_table),
        key_pk=_column(ApiKey, "id"),
        key_columns=", ".join(qn(f.column) for f in key_fields),
        k_key_columns=", ".join(f"k.{qn(f.column)}" for f in key_fields),
        log_table=qn(log_meta.db_table),
        log_pk=_column(RequestLog, "id"),
        log_api_key=_column(RequestLog, "api_key"),
        log_columns=", ".join(qn(f.column) for f in log_fields),
        log_values=", ".join(["%s"] * len(log_fields)),
        **names,
    )
    sql = " ".join(sql.split())  # one line in the server's log (the SQL has no string with spaces)
    return _Statement(
        sql=sql,
        key_names=[f.attname for f in key_fields],
        key_converters=[[f.from_db_value] if hasattr(f, "from_db_value") else [] for f in key_fields],
        log_fields=log_fields,
    )


def _accept_statement(*, key_hash: str, start: LogStart, model: str, now: datetime) -> list[Any] | None:
    """The statement's parameters, or None when a value is longer than its column."""
    statement, conn = _statement(), eventloop.statement_connection()
    fields = request_log_accept_fields(start=start, now=now, api_key_id=None, passthrough_hash="")
    log_params = []
    for field in statement.log_fields:
        value = fields[field.attname] if field.attname in fields else field.get_default()
        if isinstance(value, str) and field.max_length is not None and len(value) > field.max_length:
            return None
        log_params.append(field.get_db_prep_save(value, conn))
    adapt = conn.ops.adapt_datetimefield_value
    return [key_hash, adapt(now), adapt(now - LAST_USED_RESOLUTION), *log_params, model]


def _fast_accept_of(row: tuple[Any, ...] | None, *, now: datetime) -> FastAccept:
    if row is None:
        return FastAccept(key=None, log_id=None)
    statement, conn = _statement(), eventloop.statement_connection()
    *raw_values, log_id = row
    values = []
    for value, converters in zip(raw_values, statement.key_converters, strict=True):
        for convert in converters:
            value = convert(value, None, conn)
        values.append(value)
    key = ApiKey.from_db(conn.alias, statement.key_names, values)
    if api_key_last_used_stale(last_used_at=key.last_used_at, now=now):
        key.last_used_at = now  # as api_key_authenticate: the UPDATE above wrote it (or a racer did)
    return FastAccept(key=key, log_id=log_id)


def api_key_accept(*, key_hash: str, start: LogStart, model: str, now: datetime) -> FastAccept | None:
    """Authenticate the key with this hash and, when it needs nothing more for ``model`` (the requested
    name, checked against the allow-list), write the log row.

    None when the row is not for this statement (a value longer than its column: the ORM path raises
    the database's error as before), without touching the database.
    """
    params = _accept_statement(key_hash=key_hash, start=start, model=model, now=now)
    if params is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_statement().sql, params)
        row = cursor.fetchone()
    return _fast_accept_of(row, now=now)


async def api_key_accept_async(*, key_hash: str, start: LogStart, model: str, now: datetime) -> FastAccept | None:
    """``api_key_accept`` from async code (the statement's path is gateway/db/run.py's choice)."""
    params = _accept_statement(key_hash=key_hash, start=start, model=model, now=now)
    if params is None:
        return None
    return _fast_accept_of(await run.fetchone(_statement().sql, params), now=now)
