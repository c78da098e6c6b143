"""Connect unary RPCs (doc 2.5, 2.10, 2.12): RefreshToken, users, models, chats, subscription numbers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from gateway.kimi.fake.common import attach, auth_refused, authenticate, connect_unary_error, field, scrub
from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.http import Request
from gateway.kimi.fake.records import AccountState, Call, ChatRecord
from gateway.kimi.fake.script import main_fault

# doc 2.12: the 2026-09 catalogue.
MODELS: dict[str, Any] = {
    "availableModels": [
        {
            "id": "k2d6-chat",
            "key": "k2d6",
            "scenario": "SCENARIO_CHAT",
            "displayName": "Instant",
            "reasoningEffortOptions": [
                {"effort": "REASONING_EFFORT_NONE", "displayName": "Standard"},
                {"effort": "REASONING_EFFORT_LOW", "displayName": "High"},
            ],
            "defaultReasoningEffort": "REASONING_EFFORT_LOW",
        },
        {
            "id": "k28-agent-preview",
            "key": "k28",
            "scenario": "SCENARIO_OK_COMPUTER",
            "displayName": "K2.8",
            "kimiPlusId": "ok-computer",
            "agentMode": "TYPE_NORMAL",
            "label": ["Preview"],
        },
        {
            "id": "k3-agent",
            "key": "k3",
            "scenario": "SCENARIO_OK_COMPUTER",
            "displayName": "K3",
            "kimiPlusId": "ok-computer",
            "agentMode": "TYPE_NORMAL",
            "switchableTo": ["k3-agent-swarm"],
            "reasoningEffortOptions": [
                {"effort": "REASONING_EFFORT_LOW"},
                {"effort": "REASONING_EFFORT_HIGH"},
                {"effort": "REASONING_EFFORT_MAX", "description": "Consumes more credits"},
            ],
            "defaultReasoningEffort": "REASONING_EFFORT_HIGH",
            "contextLengthOptions": [
                {"contextLength": "CONTEXT_LENGTH_L", "available": True},
                {"contextLength": "CONTEXT_LENGTH_XL", "minMembershipLevel": "LEVEL_ADVANCED"},
            ],
            "defaultContextLength": "CONTEXT_LENGTH_L",
        },
        {
            "id": "k3-agent-swarm",
            "key": "k3",
            "scenario": "SCENARIO_OK_COMPUTER_SWARM",
            "displayName": "K3 Swarm",
            "kimiPlusId": "ok-computer",
            "agentMode": "TYPE_ULTRA",
            "minMembershipLevel": "LEVEL_BASIC",
        },
    ],
    "defaultScenario": {"scenario": "SCENARIO_CHAT", "model": "k2d6-chat"},
}


def rfc3339(ts: float) -> str:
    """RFC 3339 with nanoseconds, as the upstream writes timestamps (doc 2.2.2)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


async def refresh(fake: FakeKimi, req: Request, call: Call) -> None:
    """``AuthService/RefreshToken`` (doc 2.5.1), also the legacy GET (doc 1.4.2) when ``legacy``."""
    legacy = call.protocol == "legacy"
    if legacy:
        token = req.bearer()
    else:
        body = req.json()
        call.body = scrub(body)
        token = field(body, "refresh_token")
    with fake.lock:
        account, why = (
            fake.state.check_token(token, typ="refresh", deployment=call.deployment)
            if isinstance(token, str)
            else (None, "missing")
        )
    fault = None
    if account is not None:
        attach(fake, call, account)
        with fake.lock:
            fault = main_fault(fake.state.script.take_faults("refresh", account.name))
    if fault is not None and fault.kind == "refresh_invalid":
        account, why = None, "token is revoked"
        if fault.variant in ("400", "403"):
            await _refresh_refused_variant(req, call, legacy)
            return
    if account is None:
        await auth_refused(req, call, protocol=call.protocol, why=why)
        return
    with fake.lock:
        fake.state.issue(account)
        access, rotated = account.access_token, account.refresh_token
    if legacy:
        await req.respond_json(200, {"access_token": access, "refresh_token": rotated})
    else:
        await req.respond_json(200, {"accessToken": access, "refreshToken": rotated})


async def _refresh_refused_variant(req: Request, call: Call, legacy: bool) -> None:
    if legacy:  # doc 1.4.2: a risk-controlled account got HTTP 400
        call.status = 400
        await req.respond_json(400, {"error_type": "auth.account_abnormal", "message": "账号异常", "detail": None})
    else:
        await connect_unary_error(req, call, "permission_denied", "refresh token refused", "REASON_INVALID_AUTH_TOKEN")


async def unary(fake: FakeKimi, req: Request, call: Call) -> None:
    """Every authenticated unary RPC, dispatched on the method name (the last path segment)."""
    body = req.json()
    call.body = scrub(body)
    method = req.path.rsplit("/", 1)[-1]
    if method == "GetAvailableModels" and req.bearer() is None:  # C.7: works without a token
        await _answer_catalogue(fake, req, call)
        return
    account = await authenticate(fake, req, call, protocol="connect")
    if account is None:
        return
    if method == "GetAvailableModels":
        await _answer_catalogue(fake, req, call)
        return
    if body is None:
        await connect_unary_error(req, call, "invalid_argument", "request body is not JSON")
        return
    handler = _METHODS.get(method)
    if handler is None:
        await connect_unary_error(req, call, "unimplemented", f"method {method} is not implemented by the fake")
        return
    with fake.lock:
        status, answer = handler(fake, account, body)
    if status == 200:
        await req.respond_json(200, answer)
    else:
        await connect_unary_error(req, call, answer["code"], answer["message"])


async def _answer_catalogue(fake: FakeKimi, req: Request, call: Call) -> None:
    """The catalogue of the deployment the call reached: the ``catalogues`` option's, else the
    2026-09 one (doc 2.12). ``fault("http_5xx", on="models", status=503)`` makes it fail (app.py)."""
    with fake.lock:
        answer = fake.state.options.catalogues.get(call.deployment, MODELS)
    await req.respond_json(200, answer)


Answer = tuple[int, dict[str, Any]]


def _not_found() -> Answer:
    return 404, {"code": "not_found", "message": "chat not found"}


def _user(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    user = {"id": account.user_id, "nickname": account.name, "avatar": "", "phone": {}, "region": "REGION_OVERSEA"}
    user["globalId"] = account.user_id
    return 200, {"user": user, "workspace": {"user": {}}}


def _delete(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    ids = field(body, "chat_ids") or [field(body, "chat_id")]
    deleted = [fake.state.delete_chat(str(chat_id), account.name) for chat_id in ids]
    return (200, {}) if all(deleted) else _not_found()


def chat_summary(chat: ChatRecord) -> dict[str, Any]:
    updated = chat.messages[-1].created_at if chat.messages else chat.created_at
    return {
        "id": chat.id,
        "name": chat.name,
        "files": [],
        "createTime": rfc3339(chat.created_at),
        "updateTime": rfc3339(updated),
    }


def _own_chats(fake: FakeKimi, account: AccountState) -> list[ChatRecord]:
    chats = [c for c in fake.state.chats.values() if c.account == account.name and not c.deleted]
    return sorted(chats, key=lambda c: c.created_at, reverse=True)


def _list_chats(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    return 200, {"chats": [chat_summary(c) for c in _own_chats(fake, account)], "nextPageToken": ""}


def _list_feeds(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    if int(field(body, "page_size") or 0) > 100:  # doc 2.10
        return 400, {"code": "invalid_argument", "message": "page_size must be at most 100"}
    return 200, {"items": [{"chat": chat_summary(c)} for c in _own_chats(fake, account)], "nextPageToken": ""}


def _get_chat(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    chat = fake.state.live_chat(str(field(body, "chat_id")), account.name)
    return (200, {"chat": chat_summary(chat)}) if chat else _not_found()


def _list_messages(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    chat = fake.state.live_chat(str(field(body, "chat_id")), account.name)
    if chat is None:
        return _not_found()
    messages = []
    for m in chat.messages:
        kind = "text"
        blocks = [{"id": "1", "messageId": m.id, kind: {"content": m.text}, "createTime": rfc3339(m.created_at)}]
        messages.append({"id": m.id, "parentId": m.parent_id, "role": m.role, "status": m.status, "blocks": blocks})
        messages[-1]["createTime"] = rfc3339(m.created_at)
    return 200, {"messages": messages[::-1], "nextPageToken": ""}  # one source: newest first


def _cancel(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    chat = fake.state.live_chat(str(field(body, "chat_id")), account.name)
    message = chat.message(str(field(body, "message_id"))) if chat else None
    if message is not None and message.status == "MESSAGE_STATUS_GENERATING":
        message.status = "MESSAGE_STATUS_CANCELLED"
    return 200, {}


def _subscription(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    balance: dict[str, Any] = {
        "id": account.user_id,
        "feature": "FEATURE_OMNI",
        "type": "SUBSCRIPTION",
        "unit": "UNIT_CREDIT",
    }
    balance["amountUsedRatio"] = fake.state.options.amount_used_ratio
    balance["expireTime"] = rfc3339(time.time() + 30 * 86400)
    balance["domain"] = "DOMAIN_NEXUS"
    answer: dict[str, Any] = {"subscriptionBalance": balance}
    for key, window in (
        ("ratelimitCode5h", fake.state.options.ratelimit_5h),
        ("ratelimitCode7d", fake.state.options.ratelimit_7d),
    ):
        if window is not None:
            answer[key] = window
    return 200, answer


def _plan(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    """``SubscriptionService/GetSubscription`` (C.10; the shape of the peers that read it): a paid
    account's plan, or no subscription at all for a free one."""
    if not account.paid:
        return 200, {"subscribed": False}
    subscription = {"goods": {"title": "Moderato"}, "status": "SUBSCRIPTION_STATUS_ACTIVE"}
    return 200, {"subscription": subscription, "subscribed": True}


def _quota(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    return 200, {"quota": {"limitBytes": "524288000"}}


def _other(fake: FakeKimi, account: AccountState, body: Any) -> Answer:
    return 200, {}


_METHODS = {
    "GetCurrentUser": _user,
    "DeleteChat": _delete,
    "BatchDeleteChats": _delete,
    "ListChats": _list_chats,
    "ListFeeds": _list_feeds,
    "GetChat": _get_chat,
    "ListMessages": _list_messages,
    "CancelChat": _cancel,
    "GetSubscriptionStats": _subscription,
    "GetSubscription": _plan,
    "GetUserStorageQuota": _quota,
    "GetConfig": _other,
}
