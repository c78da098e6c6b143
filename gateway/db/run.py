"""How one statement reaches the database from async code: the one place that chooses the path.

On the server's event loop with PostgreSQL (``eventloop.async_db_enabled``), a statement runs on that
loop's own psycopg pool (gateway/db/eventloop.py); anywhere else (SQLite, management commands, other
event loops, ``KIMIPROXY_DB_ASYNC=false``) it runs on Django's connection in a worker thread
(gateway/db/threads.py). Callers decide only whether a hand-written statement applies (the
PostgreSQL-only ones say so themselves), never where it runs.
"""

from __future__ import annotations

from django.db import connection

from gateway.db import eventloop
from gateway.db.eventloop import Params, Row
from gateway.db.threads import db_call


async def fetchone(sql: str, params: Params) -> Row | None:
    """Run one statement in autocommit and return its first row (None when it returns none)."""
    if eventloop.async_db_enabled():
        return await eventloop.fetchone(sql, params)
    return await db_call(_fetchone, sql, params)


def _fetchone(sql: str, params: Params) -> Row | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None
