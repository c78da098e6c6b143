"""The floor for a Python ASGI proxy: forward each request to ``BENCH_UPSTREAM`` and stream the answer back.

No authentication, no database, no parsing: the request body and a few headers go up, the status,
content type and every body chunk come back as they arrive. Same server (gunicorn + uvicorn workers)
and same upstream client (one shared ``httpx.AsyncClient`` per worker, HTTP/1.1) as kimiproxy, so the
difference between the two is the gateway's own work.

    BENCH_UPSTREAM=http://127.0.0.1:9000 gunicorn -k uvicorn_worker.UvicornWorker bench.passthrough_app:app
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9000")
FORWARD = (b"content-type", b"authorization", b"connect-protocol-version")
_client: httpx.AsyncClient | None = None  # one per worker process (one event loop)


def client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        _client = httpx.AsyncClient(http1=True, limits=limits, timeout=60.0, trust_env=False)
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
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k in FORWARD]
    request = client().build_request(scope["method"], UPSTREAM + scope["path"], content=body, headers=headers)
    response = await client().send(request, stream=True)
    try:
        out = [(b"content-type", response.headers.get("content-type", "").encode())]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()
