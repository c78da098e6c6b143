"""The boundary between async request code and the synchronous ORM.

Every ORM step of a request runs through ``db_call``: a worker thread runs the function, then returns
its connection (to psycopg's pool on Postgres), so no connection is held while a stream is open — 500
open streams must not need 500 database connections. (On PostgreSQL the request path's hand-written
statements run on the event loop instead, gateway/db/eventloop.py, with the same rule.)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection

P = ParamSpec("P")
T = TypeVar("T")

# The process's database threads. asyncio's default executor has min(32, cores + 4) threads - 6 here -
# which many concurrent requests exhaust; these only wait on the database, so more of them is cheap.
# Threads start on first use, so a forking server (gunicorn) creates them in each worker.
_executor = ThreadPoolExecutor(max_workers=settings.KIMIPROXY_DB_THREADS, thread_name_prefix="db")


def _run_and_release(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        if not connection.in_atomic_block:
            connection.close()


async def db_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` in a worker thread with its own short-lived connection and return its result.

    A plain ``run_in_executor`` with the caller's context variables: asgiref's ``sync_to_async`` does
    the same plus bookkeeping this path never needs, at a measurable cost on every request.
    """
    context = contextvars.copy_context()
    work: Callable[[], T] = functools.partial(_run_and_release, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, context.run, work)
