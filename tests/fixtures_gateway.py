"""The gateway itself, served by uvicorn on 127.0.0.1 in a thread, for end-to-end tests.

Tests that use ``gateway_url`` need committed data the server thread can see, so they request
``transactional_db`` (via the ``e2e`` fixture). Modelled on httpx's own test server fixture.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from gateway.models import RequestLog


class ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: None) -> Iterator[str]:
    """The server outlives no database: set up after the test database, torn down before it."""
    from gateway.db.eventloop import async_db_close
    from gateway.kimi.transport.http import mark_serving_loop, upstream_client_close
    from kimiproxy.asgi import application

    loops: list[asyncio.AbstractEventLoop] = []

    async def serving(scope: Any, receive: Any, send: Any) -> None:
        # What the lifespan start-up does in production (without its gc.freeze): this loop is the
        # server's, so the request path uses its own database pool and shared upstream client here too.
        if not loops:
            loops.append(asyncio.get_running_loop())
            mark_serving_loop()
        await application(scope, receive, send)

    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY (else small writes wait ~40 ms for delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The stdlib loop: uvloop (production) warns about open transports when a test server thread ends.
    config = uvicorn.Config(serving, lifespan="off", log_level="warning", access_log=False, loop="asyncio")
    server = ThreadedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("gateway test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if loops:  # as the lifespan shutdown: the database pool (gone before the test database is
            # dropped) and the upstream client (else aiohttp warns about it at interpreter exit)
            asyncio.run_coroutine_threadsafe(async_db_close(), loops[0]).result(timeout=10)
            asyncio.run_coroutine_threadsafe(upstream_client_close(), loops[0]).result(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def e2e(gateway_server: str, fake_kimi: Any, transactional_db: None) -> Iterator[Any]:
    """Gateway URL + the fake, with a database the server thread shares."""

    class E2E:
        url = gateway_server
        fake = fake_kimi

    yield E2E()
    wait_for_background_tasks()


def wait_for_background_tasks(timeout: float = 10.0) -> None:
    """Let the server finish its tracked work (final log writes, chat deletes) before the test ends:
    pytest-django closes database access when the test is over."""
    from gateway import lifecycle

    deadline = time.monotonic() + timeout
    while lifecycle.pending_count():
        if time.monotonic() > deadline:
            raise AssertionError(f"{lifecycle.pending_count()} background tasks still running after the test")
        time.sleep(0.01)


def wait_for_final_log(request_id: str, timeout: float = 5.0) -> RequestLog:
    """The request's log row once its final write (done in a background task) has landed."""
    deadline = time.monotonic() + timeout
    while True:
        row = RequestLog.objects.filter(request_id=request_id).first()
        if row is not None and row.outcome != "pending":
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"log row {request_id} not final after {timeout}s: {row and row.outcome}")
        time.sleep(0.02)
