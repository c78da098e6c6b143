"""The ASGI app: one server for every Kimi host, routed on path (doc 2.1, 2.17, 1.20)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.kimi.fake import connect, connect_chat, files, legacy
from gateway.kimi.fake.common import (
    auth_refused,
    connect_unary_error,
    field,
    legacy_error,
    new_call,
    respond_http_fault,
)
from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.control_http import handle_control
from gateway.kimi.fake.http import Receive, Request, Scope, Send, read_body
from gateway.kimi.fake.jwt import jwt_payload
from gateway.kimi.fake.records import Call
from gateway.kimi.fake.script import take_generic

Handler = Callable[[FakeKimi, Request, Call], Awaitable[None]]

_CONNECT_KINDS = {
    "GetCurrentUser": "user",
    "GetAvailableModels": "models",
    "DeleteChat": "delete",
    "BatchDeleteChats": "delete",
    "ListChats": "list",
    "ListFeeds": "list",
    "GetChat": "get_chat",
    "ListMessages": "list_messages",
    "CancelChat": "cancel",
    "GetSubscriptionStats": "subscription",
    "GetSubscription": "plan",
    "GetUserStorageQuota": "quota",
}
_TRAFFIC = (
    "/api/chat/list",
    "/api/suggestion",
    "/api/user/usage",
    "/api/chat_1m/user/status",
    "/api/kimi_mv/user/status",
    "/api/kimiplus/history",
    "/api/kimiplus/search",
    "/api/show_case/list",
    "/api/prompt-snippet/instance",
    "/api/chat/segment/v3/rag-refs",
)


def route(method: str, path: str) -> tuple[str, str, Handler] | None:
    """(protocol, call kind, handler) for a request, or None for 404."""
    if path.startswith("/apiv2-files/sign-obj/") and method == "GET":
        return "connect", "download", files.connect_download
    if method == "PUT" and path.startswith(files.STORAGE_PREFIX):
        return "legacy", "upload", files.legacy_put
    if method == "GET":
        return _legacy_get(path)
    if method == "DELETE" and path.startswith("/api/chat/"):
        return "legacy", "delete", legacy.delete_chat
    if method != "POST":
        return None
    if path == "/api/account.gateway.v1.AuthService/RefreshToken":
        return "connect", "refresh", connect.refresh
    if path == "/apiv2/kimi.gateway.chat.v1.ChatService/Chat":
        return "connect", "chat", connect_chat.handle_chat
    if path == "/apiv2-files/file/upload":
        return "connect", "upload", files.connect_upload
    if path.endswith(".FileService/GetFileParseProgress"):
        return "connect", "parse", files.connect_parse
    if path.startswith(("/apiv2/", "/apiv2-files/")):
        return "connect", _CONNECT_KINDS.get(path.rsplit("/", 1)[-1], "other"), connect.unary
    return _legacy_post(path)


def _legacy_get(path: str) -> tuple[str, str, Handler] | None:
    if path == "/api/auth/token/refresh":
        return "legacy", "refresh", connect.refresh
    if path == "/api/user":
        return "legacy", "user", legacy.user
    if path == "/api/chat/research/usage":
        return "legacy", "research_usage", legacy.research_usage
    if path in ("/api/chat_1m/user/status", "/api/kimi_mv/user/status"):
        return "legacy", "traffic", legacy.traffic
    return None


def _legacy_post(path: str) -> tuple[str, str, Handler] | None:
    if path == "/api/chat":
        return "legacy", "create_chat", legacy.create_chat
    if path == "/api/pre-sign-url":
        return "legacy", "presign", files.legacy_presign
    if path == "/api/file":
        return "legacy", "file", files.legacy_file
    if path == "/api/file/parse_process":
        return "legacy", "parse", legacy.parse_process
    if path.startswith("/api/chat/") and path.endswith("/completion/stream") and path.count("/") == 5:
        return "legacy", "stream", legacy.stream
    if path.startswith("/api/chat/") and path.endswith(("/pre-n2s", "/token_size")):
        return "legacy", "traffic", legacy.traffic
    if path in _TRAFFIC:
        return "legacy", "traffic", legacy.traffic
    return None


class FakeKimiApp:
    """ASGI callable serving ``fake`` (lifespan events are acknowledged and otherwise ignored)."""

    def __init__(self, fake: FakeKimi) -> None:
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request(scope, await read_body(receive), receive, send)
        if req.path.startswith("/_fake/"):
            await handle_control(self.fake, req)
            return
        found = route(req.method, req.path)
        if found is None:
            await _not_found(self.fake, req)
            return
        protocol, kind, handler = found
        call = new_call(self.fake, req, protocol, kind)
        if kind not in _FAULTS_IN_HANDLER and await _generic_fault(self.fake, req, call):
            return
        await handler(self.fake, req, call)


# Handlers that take their own faults (after authentication, with protocol-specific shapes).
_FAULTS_IN_HANDLER = frozenset({"chat", "stream", "create_chat"})


async def _generic_fault(fake: FakeKimi, req: Request, call: Call) -> bool:
    """``http_5xx`` / ``http_429`` / ``access_expired`` / ``forbidden_html`` aimed at any other call kind
    with ``on=``. The account is the bearer's, or the Connect refresh body's (doc 2.5.1)."""
    body = req.json() if call.kind == "refresh" else None
    token = req.bearer() or field(body, "refresh_token")
    token = token if isinstance(token, str) else None
    claims = jwt_payload(token) if token else None
    with fake.lock:
        account = fake.state.by_user.get(str(claims.get("sub"))) if claims else None
        fault = take_generic(fake.state.script, call.kind, account.name if account else None)
    if fault is None:
        return False
    if fault.kind == "access_expired":
        await auth_refused(req, call, protocol=call.protocol, why="token is expired")
    else:
        await respond_http_fault(req, call, fault)
    return True


async def _not_found(fake: FakeKimi, req: Request) -> None:
    call = new_call(fake, req, "connect" if req.path.startswith("/apiv2") else "legacy", "other")
    if call.protocol == "connect":
        await connect_unary_error(req, call, "unimplemented", f"no such method: {req.path}")
    else:
        await legacy_error(req, call, 404, "not_found", f"no such endpoint: {req.method} {req.path}")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
