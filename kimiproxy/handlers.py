"""A lean Django ASGI handler for the API paths.

Django runs every ``MiddlewareMixin`` middleware's ``process_request`` / ``process_response`` through
``sync_to_async`` in async mode: about ten thread hops per request for sessions, auth, messages, CSRF
and friends, none of which an API call uses (keys, not cookies; views are CSRF-exempt). The API paths
get their own handler with only the middleware they need (``KIMIPROXY_API_MIDDLEWARE``); the admin and
the dashboard keep the full stack. Both share the URLconf, so routing and error handlers are the same.

``handle`` also saves the two thread hops Django makes around every request (the ``request_started``
receivers, then ``response.close()`` with the ``request_finished`` receivers), which takes a copy of
Django's ``ASGIHandler.handle``: kimiproxy/README.md says what that saves over Django's documented API
alone, as measured, and how to review the copy on a Django upgrade. Those receivers close or reset the
database connections of the request (and call the caches' ``close()``, a no-op for ours). An async
view such as ``/v1/chat/completions`` never opens one in its request (its database steps run in
gateway.db.threads's threads, which close their own, or on gateway.db.eventloop's pool, which is not Django's),
so for it they run on the event loop. A sync view (DRF's) opened its connection in asgiref's sync
thread, where only that thread can see and close it: there the handler hops exactly as Django does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

from gateway.api.errors import API_PREFIXES

API_PATH_PREFIXES = (*API_PREFIXES, "/ping", "/healthz", "/readyz", "/api/hello")


def context_holds_connection() -> bool:
    """Whether this context has an open database connection of its own (closing it needs a thread)."""
    return any(conn.connection is not None for conn in connections.all(initialized_only=True))


def served_by_async_view(request: HttpRequest | None) -> bool:
    """Whether an async view answered ``request``: then no connection was opened for it in a sync
    thread (the views' database work goes through gateway.db.threads.db_call or gateway.db.eventloop)."""
    match = getattr(request, "resolver_match", None)
    return match is not None and iscoroutinefunction(match.func)


async def send_request_started(sender: type, scope: Any) -> None:
    # A new request's context has no connection yet, so this normally runs on the loop.
    if context_holds_connection():
        await signals.request_started.asend(sender=sender, scope=scope)
    else:
        signals.request_started.send(sender=sender, scope=scope)


async def send_request_finished(sender: type, request: HttpRequest | None) -> None:
    if served_by_async_view(request) and not context_holds_connection():
        signals.request_finished.send(sender=sender)
    else:
        await signals.request_finished.asend(sender=sender)


async def response_close(response: HttpResponseBase, request: HttpRequest | None) -> None:
    """``response.close()``: its resource closers, then the ``request_finished`` receivers."""
    if served_by_async_view(request) and not context_holds_connection():
        response.close()
    else:
        await sync_to_async(response.close)()


class ApiASGIHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # No per-request ThreadSensitiveContext (Django's ASGIHandler opens one): it starts a new thread
        # for every request only to run the request_started/finished receivers. The API paths' sync work
        # (those receivers when a connection is open, the DRF views) shares asgiref's one sync thread.
        await self.handle(scope, receive, send)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Django 5.2's ``ASGIHandler.handle``, step for step, except that the signals and
        ``response.close()`` go through the functions above (tests/integration/test_asgi_handlers.py
        fails when Django's version of this method changes; kimiproxy/README.md has the checklist)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await send_request_started(self.__class__, scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            await response_close(error_response, None)
            return

        async def process_request(request: Any, send: Any) -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client disconnected during send_response
                await self.send_response(response, send)
            return response

        # Listen for a disconnect while the response is made (the listener goes first: it must not
        # raise errors that would keep process_request from being cancelled).
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request(request, send))
        tasks: list[asyncio.Task[Any]] = [listening, processing]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass  # the client disconnected
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # lets the view handle its cancellation
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = processing.result()
        except asyncio.CancelledError:
            await send_request_finished(self.__class__, request)
        else:
            await response_close(response, request)
        body_file.close()

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
