"""The request path's hand-written statements on PostgreSQL, run on the event loop itself.

Why it exists: a database step through ``gateway.db.threads.db_call`` costs a worker-thread hop, a pool
checkout through Django's connection layer, the statement, and the return: about twice the worker CPU
of the same statement on psycopg's ``AsyncConnectionPool`` (bench/README.md, "Numbers behind the code").
The four steps every chat request makes (accept, reservation, chat record, final
write) are already hand-written SQL (gateway/db/accept_sql.py, accounts/pool/pg.py,
gateway/records/conversations.py, gateway/db/finish_sql.py), so on the server's event loop they run here; the ORM
paths, SQLite and every other event loop keep ``db_call``.

One pool per serving event loop (marked at ASGI start-up, ``gateway.kimi.transport.http.mark_serving_loop``),
opened on first use with Django's connection parameters (the same database, adapters and prepared-
statement setting), closed at shutdown. Each step is one statement in autocommit (the reservation's
two steps run inside a server-side function, accounts/pool/pg.py). psycopg's errors leave as
Django's (``django.db.utils``), so callers and the JSON error middleware treat them as before (a
database outage is a 503).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import psycopg_pool
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DatabaseErrorWrapper

from gateway.kimi.transport.http import is_serving_loop

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, psycopg_pool.AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)


@functools.cache
def statement_connection() -> BaseDatabaseWrapper:
    """Django's connection object for what the statements need of it without connecting: the vendor,
    value adaptation (``ops``, ``Field.get_db_prep_save``), conversion of results. One per process,
    never connected: on the event loop the ``connection`` proxy would build a new one (features, ops,
    introspection...) in every request's context, ~1.5 % of a worker's CPU in the profile."""
    return connections.create_connection(DEFAULT_DB_ALIAS)


def is_postgresql() -> bool:
    return statement_connection().vendor == "postgresql"


def async_db_enabled() -> bool:
    """Whether the request path's statements run here: PostgreSQL, switched on, on a serving loop."""
    if not settings.KIMIPROXY_DB_ASYNC or not is_postgresql():
        return False
    try:
        return is_serving_loop(asyncio.get_running_loop())
    except RuntimeError:
        return False


def _connection_kwargs() -> dict[str, Any]:
    """Django's parameters for a new connection, for psycopg's async connection class."""
    params = statement_connection().get_connection_params()
    sync_cursor = params.pop("cursor_factory", None)
    # Django picks a server-side-binding cursor when prepared statements are on (KIMIPROXY_DB_PREPARE);
    # otherwise client-side binding, which transaction-mode poolers need. The async twins do the same.
    server_binding = sync_cursor is not None and not issubclass(sync_cursor, psycopg.ClientCursor)
    params["cursor_factory"] = psycopg.AsyncCursor if server_binding else psycopg.AsyncClientCursor
    params["autocommit"] = True
    return params


async def _pool() -> psycopg_pool.AsyncConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = psycopg_pool.AsyncConnectionPool(
            kwargs=_connection_kwargs(),
            min_size=1,
            max_size=settings.KIMIPROXY_DB_ASYNC_POOL_MAX,
            timeout=settings.KIMIPROXY_DB_ASYNC_POOL_TIMEOUT,
            open=False,
            name="kimiproxy-async",
        )
        # open() without wait= starts the pool's workers and returns without suspending, so no other
        # task sees this pool before it is open; connections are made in the background (min_size).
        await pool.open()
        _pools[loop] = pool
    return pool


def _django_errors() -> DatabaseErrorWrapper:
    """Django's own mapping of psycopg's exceptions to ``django.db.utils`` (as around every ORM query);
    psycopg_pool's PoolTimeout and PoolClosed are psycopg OperationalErrors, so they leave as 503s too."""
    return DatabaseErrorWrapper(statement_connection())


async def fetchone(sql: str, params: Params) -> Row | None:
    """Run one statement in autocommit; its first row (or None)."""
    with _django_errors():
        pool = await _pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()


async def async_db_close() -> None:
    """Close the running loop's pool (ASGI shutdown; the end of a test server)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
