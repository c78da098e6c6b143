"""Connect-RPC client for www.kimi.com (protocol doc Part 2): chat turns, delete, token refresh.

Uploads live in ``connect_files.py``. Every call sends the Bearer access token plus the ``x-msh-*``
headers derived from its claims (doc 2.3); a 401 refreshes the token once and retries (doc 2.16).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar

import httpx
from django.conf import settings

from gateway.kimi.base import (
    AuthError,
    BadRequest,
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
from gateway.kimi.connect.catalogue import BUILTIN, HIGH, LOW, NONE, Catalogue, CatalogueModel
from gateway.kimi.connect.events import ConnectTranslator, connect_error
from gateway.kimi.drift import Drift
from gateway.kimi.framing import ConnectDecoder, encode_envelope
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

CHAT_PATH = "/apiv2/kimi.gateway.chat.v1.ChatService/Chat"
DELETE_PATH = "/apiv2/kimi.chat.v1.ChatService/DeleteChat"
REFRESH_PATH = "/api/account.gateway.v1.AuthService/RefreshToken"
AGENT_ID = "kimi-agent"

CatalogueSource = Callable[[], Awaitable[Catalogue]]


def chat_body(request: TurnRequest, catalogue: Catalogue = BUILTIN) -> dict[str, Any]:
    """The ``ChatService/Chat`` request (doc 2.6, 2026-09 web-app shape). Scenario, model id, agent id
    and agent mode are the catalogue entry's for the requested model (kimi-web-protocol.md C.7, 2.12)."""
    entry = catalogue.entry_for(model=request.model, agent=request.agent_id == AGENT_ID)
    blocks: list[dict[str, Any]] = [{"message_id": "", "text": {"content": request.text}}]
    # Files go after the text block, without message_id (doc 2.11.3).
    blocks += [{"file": {"id": f.file_id, "status": "PROCESS_STATUS_SUCCESS"}} for f in request.files]
    message: dict[str, Any] = {"role": "user", "blocks": blocks, "scenario": entry.scenario, "is_goal": False}
    if request.chat_id and request.parent_id:
        message["parent_id"] = request.parent_id  # the last assistant message (doc 2.9)
    # Always `thinking: true`, as the web app sends it; the effort says how much (C.6: `false` may get a
    # downgraded model).
    options: dict[str, Any] = {"thinking": True, "enable_plugin": True, "reasoning_effort": _effort(request, entry)}
    if entry.agent_mode:
        options["agent_mode"] = entry.agent_mode
    if entry.id:
        options["model"] = entry.id
    body: dict[str, Any] = {
        "scenario": entry.scenario,
        "tools": [{"type": "TOOL_TYPE_SEARCH", "search": {}}] if request.search else [],
        "message": message,
        "options": options,
        "project_id": "",
    }
    if request.chat_id:
        body["chat_id"] = request.chat_id
    if entry.kimiplus_id:
        body["kimiplus_id"] = entry.kimiplus_id  # this spelling, not kimi_plus_id (kimi-web-protocol.md C.3)
    return body


_EFFORTS = {"none": NONE, "low": LOW, "high": HIGH}


def _effort(request: TurnRequest, entry: CatalogueModel) -> str:
    """``options.reasoning_effort`` (kimi-web-protocol.md C.6): the client's own effort when it gave one,
    else the catalogue's default for a thinking request (doc 2.12: LOW for k2d6-chat, HIGH for K3),
    else NONE, the web app's "Instant"; then capped to the efforts the model offers (2.12)."""
    if request.reasoning_effort is not None:
        effort = _EFFORTS[request.reasoning_effort]
    elif request.thinking:
        effort = entry.default_effort or (HIGH if entry.agent else LOW)
    else:
        effort = NONE
    return entry.cap(effort)


def error_from_response(
    response: UpstreamResponse, *, continuing: bool = False, drift: Drift | None = None
) -> KimiError:
    """A non-200 answer (doc 2.13.1): Connect JSON error bodies by code, bare statuses by status; an
    unknown code or reason of a turn is noted in its ``drift``."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        error = connect_error(body, continuing=continuing, status=status, drift=drift)
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
    if status in (400, 413, 415, 422):
        return BadRequest(f"upstream refused the request (HTTP {status})", status=status)
    return Unavailable(f"upstream answered HTTP {status}", status=status)


def _retry_after(response: UpstreamResponse) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def refresh_refusal(response: UpstreamResponse) -> KimiError:
    """A refused refresh (C.11): AuthError only for the explicit dead-token answer, HTTP 401 with code
    ``unauthenticated``; anything else (a filter's 403, a 400, 5xx, an HTML page) is RefreshRefused."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 401 and isinstance(body, dict) and body.get("code") == "unauthenticated":
        return AuthError("refresh token rejected by upstream", upstream_code="unauthenticated", status=401)
    return RefreshRefused(f"refresh refused by upstream (HTTP {response.status_code})", status=response.status_code)


async def refresh_tokens(http: UpstreamHTTP, refresh_token: str, *, auth_url: str | None = None) -> TokenPair:
    """``AuthService/RefreshToken`` (doc 2.5.1) on the account's auth host (C.5): rotates both tokens.
    AuthError when the token is dead, RefreshRefused for any other refusal (C.11)."""
    request = http.build_request(
        "POST",
        (auth_url or settings.KIMI_AUTH_URL) + REFRESH_PATH,
        json={"refresh_token": refresh_token},
        headers=client_headers() | {"connect-protocol-version": "1"},
        timeout=request_timeout(),
    )
    response = await send(http, request, stream=False)
    if response.status_code != 200:
        raise refresh_refusal(response)
    body = _json_object(response)
    wrapped = body.get("data")
    data: dict[str, Any] = wrapped if isinstance(wrapped, dict) else body  # tolerate a wrapper (doc 2.5.1)
    access = data.get("accessToken") or data.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProtocolError("refresh answer has no access token")
    rotated = data.get("refreshToken") or data.get("refresh_token") or ""
    return TokenPair(access_token=access, refresh_token=str(rotated))


def _json_object(response: UpstreamResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProtocolError("upstream answer is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("upstream answer is not a JSON object")
    return body


class ConnectSession:
    """``base.KimiSession`` over Connect-RPC for one account. ``catalogue`` gives the deployment's model
    catalogue for each turn (``session_for`` passes the cached fetch of C.7); without one, the built-in
    table."""

    protocol: ClassVar[str] = "connect"

    def __init__(
        self,
        *,
        tokens: TokenSource,
        http: UpstreamHTTP | None = None,
        endpoints: Endpoints | None = None,
        catalogue: CatalogueSource | None = None,
    ) -> None:
        self.tokens = tokens
        self._http = http
        self._endpoints = endpoints
        self._catalogue = catalogue
        self.drift = Drift()  # what this session's turns did not understand (base.KimiSession.drift)

    @property
    def base_url(self) -> str:
        """The account's deployment (C.5); ``KIMI_BASE_URL`` for a session built without one."""
        return self._endpoints.base if self._endpoints else settings.KIMI_BASE_URL

    @property
    def http(self) -> UpstreamHTTP:
        return self._http or upstream_client()

    def turn(self, request: TurnRequest) -> AbstractAsyncContextManager[AsyncIterator[KimiEvent]]:
        return self._turn(request)

    @asynccontextmanager
    async def _turn(self, request: TurnRequest) -> AsyncIterator[AsyncIterator[KimiEvent]]:
        catalogue = await self._catalogue() if self._catalogue else BUILTIN
        envelope = encode_envelope(json.dumps(chat_body(request, catalogue), ensure_ascii=False).encode())
        token = await self.tokens.access_token()
        try:
            events = await self._open(token, envelope, request)
        except AuthError:
            token = await self.tokens.access_token(rejected=token)
            events = await self._open(token, envelope, request)
        try:
            yield events
        finally:
            await events.aclose()

    async def _open(self, token: str, envelope: bytes, request: TurnRequest) -> EventStream[Any]:
        """Send the Chat request and read up to its first event (errors reported at once surface here)."""
        headers = identity_headers(token) | {
            "content-type": "application/connect+json",
            "connect-protocol-version": "1",
        }
        continuing = bool(request.chat_id)
        http_request = self.http.build_request(
            "POST", self.base_url + CHAT_PATH, content=envelope, headers=headers, timeout=_stream_timeout()
        )
        sent_at = asyncio.get_running_loop().time()
        response = await send(self.http, http_request, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                raise error_from_response(response, continuing=continuing, drift=self.drift)
            translator = ConnectTranslator(continuing=continuing, drift=self.drift)
            events = EventStream(response, ConnectDecoder(), translator, sent_at=sent_at)
            await events.prime()
        except BaseException:
            await response.aclose()
            raise
        return events

    async def unary(self, url: str, body: dict[str, Any], *, continuing: bool = False) -> dict[str, Any]:
        """A unary JSON RPC (doc 2.2.2), with one refresh-and-retry on 401."""
        token = await self.tokens.access_token()
        response = await self._post_json(url, body, token)
        if response.status_code == 401:
            token = await self.tokens.access_token(rejected=token)
            response = await self._post_json(url, body, token)
        if response.status_code != 200:
            raise error_from_response(response, continuing=continuing)
        return _json_object(response)

    async def _post_json(self, url: str, body: dict[str, Any], token: str) -> UpstreamResponse:
        headers = identity_headers(token) | {"connect-protocol-version": "1"}
        request = self.http.build_request("POST", url, json=body, headers=headers, timeout=request_timeout())
        return await send(self.http, request, stream=False)

    async def delete_chat(self, chat_id: str) -> None:
        try:
            await self.unary(self.base_url + DELETE_PATH, {"chat_id": chat_id}, continuing=True)
        except ChatNotFound:
            log.debug("chat to delete was already gone")

    async def upload(self, blob: FileBlob) -> FileRef:
        from gateway.kimi.connect.files import connect_upload

        return await connect_upload(self, blob)

    async def check(self) -> bool:
        try:
            await self.tokens.refresh_now()
        except AuthError:
            return False
        return True

    @staticmethod
    def unsupported_flags(request: TurnRequest) -> list[str]:
        flags = [name for name in ("research", "math") if getattr(request, name)]
        if request.agent_id and request.agent_id != AGENT_ID:
            flags.append("agent_id")
        return flags


def _stream_timeout() -> httpx.Timeout:
    # Reads are bounded by EventStream's budgets; httpx only needs a generous backstop.
    backstop = max(settings.KIMIPROXY_IDLE_TIMEOUT, settings.KIMIPROXY_FIRST_BYTE_TIMEOUT) + 30
    return request_timeout(read=backstop)
