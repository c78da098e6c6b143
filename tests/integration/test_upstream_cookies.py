"""The shared upstream client keeps no cookies: one account's Set-Cookie never reaches another's request.

A loopback server sets a session cookie (as Kimi has done with ``kimi-auth``) and reports the Cookie
header of the next request; both transports (aiohttp, and httpx by KIMIPROXY_UPSTREAM_CLIENT) are used
exactly as the gateway builds them (``gateway.kimi.transport.http.upstream_client``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.kimi.transport.http import upstream_client, upstream_client_close


@pytest.fixture
async def cookie_server() -> AsyncIterator[str]:
    async def login(request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("kimi-auth", "account-a-session-jwt", path="/")
        return response

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"cookie": request.headers.get("Cookie")})

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        # By name, not by IP: aiohttp's default jar ignores cookies from IP addresses, Kimi's is a name.
        yield f"http://localhost:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_cookie_set_for_one_request_is_not_sent_with_the_next(cookie_server, settings, transport) -> None:
    settings.KIMIPROXY_UPSTREAM_CLIENT = transport
    client = upstream_client()
    try:
        first = await client.send(client.build_request("POST", f"{cookie_server}/login", json={}))
        assert "kimi-auth" in first.headers.get("set-cookie", "")  # the server did set it

        second = await client.send(client.build_request("POST", f"{cookie_server}/echo", json={}))
        assert second.json() == {"cookie": None}
    finally:
        await upstream_client_close()
