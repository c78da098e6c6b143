"""ASGI entry point: ``kimiproxy.asgi:application`` (gunicorn -k uvicorn_worker.UvicornWorker, or uvicorn).

Django's ASGI handler refuses the lifespan protocol, so ``application`` answers it itself and hands
every other scope to Django. On shutdown the server has already stopped accepting connections and
waited for open responses (gunicorn's ``graceful_timeout`` bounds that); we then turn readiness to 503
and drain the tracked background tasks (final log writes, upstream chat deletes) for up to
``KIMIPROXY_SHUTDOWN_GRACE`` seconds, so a stream that just finished still has its chat deleted.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimiproxy.settings")

django_application = get_asgi_application()

# Imported after Django is set up (get_asgi_application ran django.setup()).
from django.conf import settings  # noqa: E402

from gateway import lifecycle  # noqa: E402
from gateway.db.eventloop import async_db_close  # noqa: E402
from gateway.kimi.transport.http import mark_serving_loop, upstream_client_close  # noqa: E402
from kimiproxy.handlers import ApiASGIHandler, is_api_path  # noqa: E402

log = logging.getLogger("kimiproxy.asgi")
api_application = ApiASGIHandler()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def lifespan_shutdown() -> None:
    """Readiness 503 at once, then wait for background tasks within the grace period."""
    lifecycle.begin_shutdown()
    grace = settings.KIMIPROXY_SHUTDOWN_GRACE
    left = await lifecycle.drain(grace)
    if left:
        # Their rows stay recorded (pending_delete / active): cleanup_conversations finishes them.
        log.warning("shutdown: %s background task(s) still running after %.0f s", left, grace)
    await upstream_client_close()
    await async_db_close()


async def lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol: freeze the start-up heap for the collector; drain on shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Everything loaded so far (Django, the apps, their modules) lives as long as the process:
            # out of the collector's sight, a full collection no longer scans it (a ~40 ms pause per
            # few hundred requests before, which set the p99 latency).
            gc.collect()
            gc.freeze()
            mark_serving_loop()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await lifespan_shutdown()
            except Exception as exc:  # the server must still be told, or it waits for us forever
                log.exception("shutdown drain failed")
                await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    handler = api_application if scope["type"] == "http" and is_api_path(scope["path"]) else django_application
    # django-stubs types the handler with dict scopes and Mapping messages; servers pass the ASGI shapes.
    await handler(scope, receive, send)  # type: ignore[arg-type]
