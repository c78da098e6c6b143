"""The boundary between async request code and the synchronous ORM.

Every database step of a request runs through ``db_call``: a worker thread runs the function, then
returns its connection (to psycopg's pool on Postgres), so no connection is held while a stream is
open — 500 open streams must not need 500 database connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

P = ParamSpec("P")
T = TypeVar("T")


def _run_and_release(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        if not connection.in_atomic_block:
            connection.close()


async def db_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` in a worker thread with its own short-lived connection and return its result."""
    return await sync_to_async(_run_and_release, thread_sensitive=False)(fn, *args, **kwargs)
