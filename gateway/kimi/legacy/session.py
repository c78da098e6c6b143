"""Legacy REST + SSE client (protocol doc Part 1): create chat, completion stream, delete, refresh.

Uploads live in ``legacy_files.py``. Only calls a feature needs are made: no user lookup (the user id
comes from the JWT's ``sub``), no "fake traffic" endpoints (doc 1.13).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar

import httpx
from django.conf import settings

from gateway.kimi.base import (
    AuthError,
    BadRequest,
    ChatCreated,
    ChatNotFound,
    FileBlob,
    FileRef,
    KimiError,
    KimiEvent,
    ProtocolError,
    RateLimited,
    RefreshRefused,
    TokenSource,
    TurnRequest,
    Unavailable,
)
from gateway.kimi.drift import Drift
from gateway.kimi.framing import SSEDecoder
from gateway.kimi.legacy.events import LegacyTranslator, legacy_error
from gateway.kimi.origins import Endpoints
from gateway.kimi.stream import EventStream, send
from gateway.kimi.tokens import TokenPair
from gateway.kimi.transport.http import (
    UpstreamHTTP,
    UpstreamResponse,
    client_headers,
    identity_headers,
    request_timeout,
    upstream_client,
)

log = logging.getLogger(__name__)

REFRESH_PATH = "/api/auth/token/refresh"
CHAT_PATH = "/api/chat"
CONNECT_AGENT_ID = "kimi-agent"  # the Connect agent scenario; no legacy equivalent
THINKING_MODEL = "k1.5"  # 2025 shape: kimiplus_id "kimi" + model, reasoning in `k1` events (doc 1.12)


def create_chat_body(request: TurnRequest) -> dict[str, Any]:
    """``POST /api/chat`` (doc 1.6, 2024-12 shape); ``kimiplus_id`` selects a Kimi+ agent (doc 1.16)."""
    return {"enter_method": "new_chat", "is_example": False, "kimiplus_id": _kimiplus_id(request), "name": "未命名会话"}


def stream_body(request: TurnRequest) -> dict[str, Any]:
    """``POST /api/chat/{id}/completion/stream`` (doc 1.7): one user message, flags, file refs."""
    body: dict[str, Any] = {
        "kimiplus_id": _kimiplus_id(request),
        "messages": [{"role": "user", "content": request.text}],
        "refs": [f.file_id for f in request.files],
        "refs_file": [_ref_file(f) for f in request.files],
        "use_math": request.math,
        "use_research": request.research,
        "use_search": request.search,
        "extend": {"sidebar": True},
    }
    # The legacy stream has no effort: any effort but "none" asks for the thinking model (doc 1.12, C.6).
    if request.reasons:
        body["model"] = THINKING_MODEL
    return body


def _kimiplus_id(request: TurnRequest) -> str:
    return request.agent_id if request.agent_id and request.agent_id != CONNECT_AGENT_ID else "kimi"


def _ref_file(ref: FileRef) -> dict[str, Any]:
    # The UI-side descriptor the web app sends next to `refs` (doc 1.7.1); the server may ignore it.
    return {
        "id": ref.file_id,
        "name": ref.name,
        "size": ref.size,
        "done": True,
        "file": {},
        "parse_status": "success",
        "upload_progress": 100,
        "upload_status": "success",
    }


def error_from_response(
    response: UpstreamResponse, *, continuing: bool = False, drift: Drift | None = None
) -> KimiError:
    """A non-200 answer: ``error_type`` bodies by type (doc 1.5), bare statuses by status; an unknown
    error type of a turn is noted in its ``drift``."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        error = legacy_error(body, status=status, continuing=continuing, drift=drift)
        if isinstance(error, RateLimited) and error.retry_after is None and error.reset_at is None:
            error.retry_after = _retry_after(response)
        return error
    if status == 401:
        return AuthError("upstream rejected the access token", status=status)
    retry_after = _retry_after(response)
    if status == 429 and retry_after is not None:
        # A bare 429 with Retry-After: rate-limited for that long (kimi-web-protocol.md C.8, C.13); without
        # the header it stays an anonymous overload (Unavailable).
        return RateLimited(
            f"upstream rate limit (HTTP 429, retry after {retry_after:g} s)", retry_after=retry_after, status=status
        )
    if status == 404:
        return ChatNotFound("chat not found", status=status) if continuing else BadRequest("not found", status=status)
    if 400 <= status < 500 and status != 429:
        return BadRequest(f"upstream refused the request (HTTP {status})", status=status)
    return Unavailable(f"upstream answered HTTP {status}", status=status)


def _retry_after(response: UpstreamResponse) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def json_object(response: UpstreamResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProtocolError("upstream answer is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("upstream answer is not a JSON object")
    return body


def refresh_refusal(response: UpstreamResponse) -> KimiError:
    """A refused refresh (C.11): AuthError only for the explicit ``auth.token.invalid`` answer (doc
    1.4.2); anything else (the 400 of a risk-controlled account, a filter's 403, 5xx, HTML) is
    RefreshRefused."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error_type") == "auth.token.invalid":
        status = response.status_code
        return AuthError("refresh token rejected by upstream", upstream_code="auth.token.invalid", status=status)
    return RefreshRefused(f"refresh refused by upstream (HTTP {response.status_code})", status=response.status_code)


async def refresh_tokens(http: UpstreamHTTP, refresh_token: str, *, auth_url: str | None = None) -> TokenPair:
    """``GET /api/auth/token/refresh`` with the refresh token as Bearer (doc 1.4.2); both rotate.
    AuthError when the token is dead, RefreshRefused for any other refusal (C.11)."""
    request = http.build_request(
        "GET",
        (auth_url or settings.KIMI_LEGACY_BASE_URL) + REFRESH_PATH,
        headers=client_headers() | {"authorization": f"Bearer {refresh_token}"},
        timeout=request_timeout(),
    )
    response = await send(http, request, stream=False)
    if response.status_code != 200:
        raise refresh_refusal(response)
    body = json_object(response)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProtocolError("refresh answer has no access token")
    return TokenPair(access_token=access, refresh_token=str(body.get("refresh_token") or ""))


class LegacySession:
    """``base.KimiSession`` over the legacy REST + SSE API for one account."""

    protocol: ClassVar[str] = "legacy"

    def __init__(
        self, *, tokens: TokenSource, http: UpstreamHTTP | None = None, endpoints: Endpoints | None = None
    ) -> None:
        self.tokens = tokens
        self._http = http
        self._endpoints = endpoints
        self.drift = Drift()  # what this session's turns did not understand (base.KimiSession.drift)

    @property
    def base_url(self) -> str:
        """The account's host (C.5); ``KIMI_LEGACY_BASE_URL`` for a session built without one."""
        return self._endpoints.base if self._endpoints else settings.KIMI_LEGACY_BASE_URL

    @property
    def http(self) -> UpstreamHTTP:
        return self._http or upstream_client()

    def turn(self, request: TurnRequest) -> AbstractAsyncContextManager[AsyncIterator[KimiEvent]]:
        return self._turn(request)

    @asynccontextmanager
    async def _turn(self, request: TurnRequest) -> AsyncIterator[AsyncIterator[KimiEvent]]:
        chat_id = request.chat_id
        if not chat_id:
            created = await self.call("POST", CHAT_PATH, json=create_chat_body(request), drift=self.drift)
            chat_id = created.get("id")
            if not isinstance(chat_id, str) or not chat_id:
                raise ProtocolError("create-chat answer has no chat id")
        turn = _LegacyTurn(self, request, chat_id)
        try:
            yield turn
        finally:
            await turn.aclose()

    async def call(
        self, method: str, path: str, *, json: Any = None, continuing: bool = False, drift: Drift | None = None
    ) -> dict[str, Any]:
        """One JSON call on the legacy host, with one refresh-and-retry on 401 (``drift``: a turn's)."""
        token = await self.tokens.access_token()
        response = await self.request(method, path, token=token, json=json, stream=False)
        if response.status_code == 401:
            token = await self.tokens.access_token(rejected=token)
            response = await self.request(method, path, token=token, json=json, stream=False)
        if response.status_code != 200:
            raise error_from_response(response, continuing=continuing, drift=drift)
        return json_object(response) if response.content.strip() else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        json: Any = None,
        stream: bool,
        timeout: httpx.Timeout | None = None,
    ) -> UpstreamResponse:
        request = self.http.build_request(
            method,
            self.base_url + path,
            json=json,
            headers=identity_headers(token),
            timeout=timeout or request_timeout(),
        )
        return await send(self.http, request, stream=stream)

    async def delete_chat(self, chat_id: str) -> None:
        try:
            await self.call("DELETE", f"{CHAT_PATH}/{chat_id}", continuing=True)
        except ChatNotFound:
            log.debug("chat to delete was already gone")

    async def upload(self, blob: FileBlob) -> FileRef:
        from gateway.kimi.legacy.files import legacy_upload

        return await legacy_upload(self, blob)

    async def check(self) -> bool:
        try:
            await self.tokens.refresh_now()
        except AuthError:
            return False
        return True

    @staticmethod
    def unsupported_flags(request: TurnRequest) -> list[str]:
        flags = ["model"] if request.model else []
        if request.agent_id == CONNECT_AGENT_ID:
            flags.append("agent_id")
        return flags


class _LegacyTurn:
    """Events of one legacy turn: ``ChatCreated`` first (the chat exists from POST /api/chat on), then
    the completion stream, opened on the next read with one refresh-and-retry on 401."""

    def __init__(self, session: LegacySession, request: TurnRequest, chat_id: str) -> None:
        self._session = session
        self._request = request
        self._chat_id = chat_id
        self._announced = False
        self._stream: EventStream[Any] | None = None

    def __aiter__(self) -> AsyncIterator[KimiEvent]:
        return self

    async def __anext__(self) -> KimiEvent:
        if not self._announced:
            self._announced = True
            return ChatCreated(self._chat_id)
        if self._stream is None:
            self._stream = await self._open()
        return await self._stream.__anext__()

    async def _open(self) -> EventStream[Any]:
        tokens = self._session.tokens
        token = await tokens.access_token()
        try:
            return await self._open_with(token)
        except AuthError:
            token = await tokens.access_token(rejected=token)
            return await self._open_with(token)

    async def _open_with(self, token: str) -> EventStream[Any]:
        continuing = bool(self._request.chat_id)
        path = f"{CHAT_PATH}/{self._chat_id}/completion/stream"
        backstop = max(settings.KIMIPROXY_IDLE_TIMEOUT, settings.KIMIPROXY_FIRST_BYTE_TIMEOUT) + 30
        sent_at = asyncio.get_running_loop().time()
        body = stream_body(self._request)
        response = await self._session.request(
            "POST", path, token=token, json=body, stream=True, timeout=request_timeout(read=backstop)
        )
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            raise error_from_response(response, continuing=continuing, drift=self._session.drift)
        translator = LegacyTranslator(continuing=continuing, drift=self._session.drift)
        return EventStream(response, SSEDecoder(), translator, sent_at=sent_at)

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
