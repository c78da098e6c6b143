"""The API handler variants that bench/handler_ab.py compares, one per server process (BENCH_API_HANDLER).

copy        kimiproxy.handlers.ApiASGIHandler (Django 5.2's handle copied, signals on the loop)
public      Django's own ASGIHandler from get_asgi_application() with the API middleware list, each request
            in a ThreadSensitiveContext whose executor comes from a pool (documented Django and asgiref API
            only), so Django's per-request context reuses a warm thread instead of starting one
stock       the same handler without the pool: Django's per-request thread as it ships
nocontext   the same handler with ``__call__`` overridden to skip the ThreadSensitiveContext and call
            Django's ``handle`` (an undocumented method) unchanged
django      the full Django application (every middleware) for the API paths too

Only ``copy`` is fit to serve: in the others Django's ``response.close()`` runs in a thread, where
``gateway.chat.sse.SseBody.close`` cannot spawn the finish task of a body that was never iterated
(kimiproxy/README.md says what switching would take). The benchmark's bodies are always read to the end.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

import kimiproxy.asgi as entry

VARIANT = os.environ.get("BENCH_API_HANDLER", "copy")


class ExecutorPool:
    """Single-thread executors, one per request in flight, re-used (asgiref: "you may use it again for a
    later block, for example in a pool"; "do not use one executor for two blocks at the same time")."""

    def __init__(self) -> None:
        self.free: list[ThreadPoolExecutor] = []

    def wrap(self, app: Any) -> Any:
        async def pooled(scope: Any, receive: Any, send: Any) -> None:
            executor = self.free.pop() if self.free else ThreadPoolExecutor(max_workers=1)
            try:
                async with ThreadSensitiveContext(executor=executor):
                    await app(scope, receive, send)
            finally:
                self.free.append(executor)

        return pooled


def lean_django() -> Any:
    with override_settings(MIDDLEWARE=settings.KIMIPROXY_API_MIDDLEWARE):
        return get_asgi_application()


class NoContextHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)


if VARIANT == "public":
    entry.api_application = ExecutorPool().wrap(lean_django())
elif VARIANT == "stock":
    entry.api_application = lean_django()
elif VARIANT == "nocontext":
    with override_settings(MIDDLEWARE=settings.KIMIPROXY_API_MIDDLEWARE):
        entry.api_application = NoContextHandler()
elif VARIANT == "django":
    entry.api_application = entry.django_application
else:
    assert VARIANT == "copy", VARIANT

application = entry.application
