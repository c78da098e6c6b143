"""Minimal ASGI plumbing for the fake (Starlette is not installed, and the fake needs very little)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from gateway.kimi.fake.writes import CUT, Pause, Step, dumps

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NOT_JSON = object()


class Request:
    def __init__(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.body = body
        self.receive = receive
        self.send = send
        host = self.headers.get("host", "127.0.0.1")
        self.base_url = f"{scope.get('scheme', 'http')}://{host}"
        server = scope.get("server") or ("", 0)
        self.port: int = int(server[1] or 0)  # the listening port, which tells the deployment (C.5)
        self._json: Any = None

    def json(self) -> Any:
        """The JSON body, or None when it is not JSON."""
        if self._json is None:
            try:
                self._json = json.loads(self.body) if self.body else {}
            except (ValueError, UnicodeDecodeError):
                self._json = _NOT_JSON
        return None if self._json is _NOT_JSON else self._json

    def json_object(self) -> dict[str, Any]:
        """The JSON body when it is an object, else an empty one (the legacy endpoints are lenient)."""
        body = self.json()
        return body if isinstance(body, dict) else {}

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        if value[:7].lower() != "bearer ":
            return None
        return value[7:].strip() or None

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        raw = [(k.encode(), v.encode()) for k, v in headers]
        if content_type:
            raw.append((b"content-type", content_type.encode()))
        raw.append((b"content-length", str(len(body)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": raw})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        await self.respond(status, dumps(data), "application/json", headers)

    async def stream(
        self,
        steps: list[Step],
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        status: int = 200,
    ) -> None:
        """Write ``steps`` one by one. Headers go out with the first bytes, so a leading ``Pause`` is total
        silence. ``CUT`` returns without finishing the chunked body: uvicorn then closes the connection."""
        raw = [(k.encode(), v.encode()) for k, v in headers] + [(b"content-type", content_type.encode())]
        start = {"type": "http.response.start", "status": status, "headers": raw}
        started = False
        disconnected = asyncio.Event()
        watcher = asyncio.create_task(self._watch_disconnect(disconnected))
        try:
            for step in steps:
                if isinstance(step, bytes):
                    if not started:
                        await self.send(start)
                        started = True
                    await self.send({"type": "http.response.body", "body": step, "more_body": True})
                elif isinstance(step, Pause):
                    if await _wait(disconnected, step.seconds):
                        return
                elif step is CUT:
                    if not started:
                        await self.send(start)
                    return
                if disconnected.is_set():
                    return
            if not started:
                await self.send(start)
            await self.send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    async def _watch_disconnect(self, event: asyncio.Event) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                event.set()
                return


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``event`` is set first; True when it was."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
