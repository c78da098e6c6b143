"""The upstream HTTP client: one shared client per worker process and event loop (aiohttp, or httpx).

HTTP/1.1 only (every upstream host speaks it, and one stream per connection keeps flow control
simple), pooled up to ``KIMIPROXY_UPSTREAM_MAX_CONNECTIONS``. Timeouts are passed per request, read
from settings at call time, so a changed setting takes effect without a new client. The client ignores
proxy environment variables: outbound traffic goes where settings say, and nowhere else. It keeps no
cookies: it is shared by every account, and each request carries its own account's credentials only.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import weakref
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeAlias, TypeVar

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings

from accounts.jwt_claims import jwt_claims
from gateway.kimi.transport.aio import AioResponse, AioUpstream

P = ParamSpec("P")
T = TypeVar("T")

# The upstream client: aiohttp by default (gateway/kimi/transport/aio.py says why), httpx on request.
UpstreamHTTP: TypeAlias = "httpx.AsyncClient | AioUpstream"
UpstreamResponse: TypeAlias = "httpx.Response | AioResponse"

# The one piece of module state this task calls for: a client per running event loop (a worker
# process runs one loop; tests run many). Weak keys let a finished loop's entry disappear.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamHTTP] = weakref.WeakKeyDictionary()
_serving_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def upstream_client() -> UpstreamHTTP:
    """The shared client of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        size = settings.KIMIPROXY_UPSTREAM_MAX_CONNECTIONS
        if settings.KIMIPROXY_UPSTREAM_CLIENT == "httpx":
            client = httpx.AsyncClient(
                http1=True,
                http2=False,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=min(size, 100)),
                timeout=request_timeout(),
                trust_env=False,
                follow_redirects=False,
                cookies=no_cookies(),
            )
        else:
            client = AioUpstream(max_connections=size)
        _clients[loop] = client
    return client


def no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing. The client is shared by every account: a cookie set in one account's
    response (Kimi has set a ``kimi-auth`` session JWT that way) must never be sent for another."""
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def mark_serving_loop() -> None:
    """Called at ASGI start-up: this loop's client lives as long as the server does."""
    _serving_loops.add(asyncio.get_running_loop())


def is_serving_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return loop in _serving_loops


async def upstream_scoped(coro: Awaitable[T]) -> T:
    """Await ``coro``; then, unless this is the server's own loop, close the client the loop got.

    For upstream work run from sync code (commands, admin actions): ``asyncio.run`` and
    ``async_to_sync`` give it a loop of its own, whose client would otherwise stay open (sockets)
    after the loop is gone. Under the ASGI server ``async_to_sync`` runs on the server's loop,
    whose shared client must stay open.
    """
    try:
        return await coro
    finally:
        if asyncio.get_running_loop() not in _serving_loops:
            await upstream_client_close()


def run_upstream(fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the async upstream call ``fn(*args, **kwargs)`` from sync code (see ``upstream_scoped``)."""
    return async_to_sync(upstream_scoped)(fn(*args, **kwargs))


async def upstream_client_close() -> None:
    """Close the running loop's client (on shutdown, and at the end of tests)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def request_timeout(*, read: float | None = None) -> httpx.Timeout:
    """httpx timeouts for one request. Streams pass ``read`` large and enforce the first-byte, idle
    and no-progress budgets themselves (gateway/kimi/stream.py)."""
    first_byte = settings.KIMIPROXY_FIRST_BYTE_TIMEOUT
    return httpx.Timeout(
        connect=settings.KIMIPROXY_CONNECT_TIMEOUT,
        read=first_byte if read is None else read,
        write=max(first_byte, 30.0),
        pool=first_byte,
    )


def client_headers() -> dict[str, str]:
    """Headers of every upstream call, refreshes included (kimi-web-protocol.md C.4): the two that
    change the answer, ``x-language`` and ``r-timezone``, and an honest ``user-agent``. Never
    ``Origin``, ``Referer`` or a web-app version: the gateway is not the web page."""
    return {
        "user-agent": settings.KIMIPROXY_USER_AGENT,
        "x-language": settings.KIMIPROXY_LANGUAGE,
        "r-timezone": settings.KIMIPROXY_TIMEZONE,
    }


def identity_headers(access_token: str) -> dict[str, str]:
    """``client_headers()``, ``authorization`` and the ``x-msh-*`` trio derived from the access JWT's
    claims (doc 1.2, 2.3). A claim the token lacks (legacy tokens have no device id) leaves its header
    out rather than inventing one."""
    claims = jwt_claims(access_token) or {}
    headers = client_headers() | {"authorization": f"Bearer {access_token}", "x-msh-platform": "web"}
    for header, claim in (("x-msh-device-id", "device_id"), ("x-msh-session-id", "ssid"), ("x-traffic-id", "sub")):
        value = claims.get(claim)
        if isinstance(value, str | int) and str(value):
            headers[header] = str(value)
    return headers
