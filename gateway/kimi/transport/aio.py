"""The upstream transport on aiohttp, behind the small part of httpx's client API our clients use.

Why: under the benchmark's load httpx was the largest cost left in a request (bench/README.md). Its
pure-Python HTTP/1.1 stack hands every chunk of a streamed body through about ten async layers (h11,
httpcore, httpx), while aiohttp parses in C (llhttp) and ``iter_any`` returns whatever arrived at once:
a fraction of the CPU per upstream call (bench/README.md, "Numbers behind the code").

The protocol clients keep speaking the httpx vocabulary (``build_request``/``send``, ``status_code``,
``headers``, ``json()``, ``aread()``, ``aiter_bytes()``, ``aclose()``), so an ``httpx.AsyncClient``
still works wherever a client is passed in (some tests do, e.g. with ``httpx.MockTransport``), and
``KIMIPROXY_UPSTREAM_CLIENT=httpx`` switches the process back. Transport failures are raised as
httpx's exception types so that one mapping (``gateway/kimi/stream.py``) serves both.
"""

from __future__ import annotations

import dataclasses
import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDictProxy


@dataclasses.dataclass
class AioRequest:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | aiohttp.FormData | None
    timeout: aiohttp.ClientTimeout


class AioResponse:
    """A response with httpx's attribute names. ``content`` is the body once read: at once for a
    non-streamed send, by ``aread()`` for a streamed one (``aiter_bytes()`` reads it as it arrives)."""

    def __init__(self, response: aiohttp.ClientResponse, *, url: str) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.url = url
        self.content = b""
        self._closed = False

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    async def aread(self) -> bytes:
        if not self._closed and not self.content:
            try:
                self.content = await self._response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _as_httpx(exc) from None
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, several network reads' worth at once when they queued up."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc) from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._response.content.at_eof():
                self._response.release()  # the connection goes back to the pool
            else:
                self._response.close()  # abandoned mid-body: the connection cannot be reused


class AioUpstream:
    """One ``aiohttp.ClientSession`` (pooled, keep-alive, HTTP/1.1) with an httpx-like surface."""

    def __init__(self, *, max_connections: int) -> None:
        # ttl_dns_cache: upstream hosts are few and fixed; resolve them once a minute, not per request.
        connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=60)
        # trust_env=False: outbound traffic goes where settings say, never via proxy variables.
        # No cookie jar: one session serves every account, so a cookie one account's response sets
        # (Kimi has set a ``kimi-auth`` session JWT that way) must never ride on another's request.
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

    @property
    def is_closed(self) -> bool:
        return self._session.closed

    async def aclose(self) -> None:
        await self._session.close()

    def build_request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> AioRequest:
        out_headers = dict(headers or {})
        data: bytes | aiohttp.FormData | None = content
        if json is not None:
            data = jsonlib.dumps(json, ensure_ascii=False).encode()
            out_headers.setdefault("content-type", "application/json")
        if files:
            form = aiohttp.FormData()
            for field, (name, payload, mime_type) in files.items():
                form.add_field(field, payload, filename=name, content_type=mime_type)
            data = form
        return AioRequest(method, url, out_headers, data, _timeout(timeout))

    async def send(self, request: AioRequest, *, stream: bool = False) -> AioResponse:
        try:
            response = await self._session.request(
                request.method,
                request.url,
                data=request.data,
                headers=request.headers,
                timeout=request.timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx(exc) from None
        answer = AioResponse(response, url=request.url)
        if not stream:
            try:
                await answer.aread()
            finally:
                await answer.aclose()
        return answer


def _timeout(timeout: httpx.Timeout | None) -> aiohttp.ClientTimeout:
    if timeout is None:
        return aiohttp.ClientTimeout(total=None)
    # httpx's pool timeout has no aiohttp twin; the caller's overall budget (stream.send) covers it.
    return aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect, sock_read=timeout.read)


def _as_httpx(exc: BaseException) -> httpx.TransportError:
    """The httpx exception our error mapping expects for an aiohttp failure."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc) or "connect timeout")
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(str(exc) or "read timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(exc) or "incomplete body")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc) or "connect failed")
    return httpx.ReadError(str(exc) or type(exc).__name__)
