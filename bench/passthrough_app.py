"""The floor for a Python ASGI proxy: forward each request to ``BENCH_UPSTREAM`` and stream the answer back.

No authentication, no database, no parsing: the request body and a few headers go up, the status,
content type and every body chunk come back as they arrive. Same server (gunicorn + uvicorn workers)
and same upstream transport (one shared aiohttp session per worker, HTTP/1.1, as
gateway/kimi/transport/aio.py) as kimiproxy, so the difference between the two is the gateway's own work.

    BENCH_UPSTREAM=http://127.0.0.1:9000 gunicorn -k uvicorn_worker.UvicornWorker bench.passthrough_app:app
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9000")
FORWARD = (b"content-type", b"authorization", b"connect-protocol-version")
_client: aiohttp.ClientSession | None = None  # one per worker process (one event loop)


def client() -> aiohttp.ClientSession:
    global _client
    if _client is None:
        _client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), trust_env=False)
    return _client


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await _read_body(receive)
    headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in FORWARD}
    async with client().request(scope["method"], UPSTREAM + scope["path"], data=body, headers=headers) as response:
        out = [(b"content-type", response.headers.get("content-type", "").encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
