"""A lean Django ASGI handler for the API paths.

Django runs every ``MiddlewareMixin`` middleware's ``process_request`` / ``process_response`` through
``sync_to_async`` in async mode: about ten thread hops per request for sessions, auth, messages, CSRF
and friends, none of which an API call uses (keys, not cookies; views are CSRF-exempt). The API paths
get their own handler with only the middleware they need (``KIMIPROXY_API_MIDDLEWARE``); the admin and
the dashboard keep the full stack. Both share the URLconf, so routing and error handlers are the same.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_PATH_PREFIXES = ("/v1/", "/token/", "/ping", "/healthz", "/readyz")


class ApiASGIHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # No per-request ThreadSensitiveContext (Django's ASGIHandler opens one): it starts a new thread
        # for every request only to run the request_started/finished receivers. The API paths' sync work
        # (those receivers, the DRF views) shares asgiref's one sync thread instead.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        # load_middleware reads settings.MIDDLEWARE; swap in the API list for this one call, at start-up
        # (single-threaded), the way django.test.override_settings does.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.KIMIPROXY_API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATH_PREFIXES)
