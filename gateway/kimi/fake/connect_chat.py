"""``ChatService/Chat``: validate the request, update the message tree, stream the reply (doc 2.6, 2.8, 2.9)."""

from __future__ import annotations

import json
import struct
import time
from typing import Any

from gateway.kimi.fake.common import authenticate, field, respond_http_fault, retry_headers, scrub
from gateway.kimi.fake.connect_turn import TurnPlan, build_turn, cite_deltas, end_frame
from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.demo import demo_reply
from gateway.kimi.fake.errors import connect_error
from gateway.kimi.fake.http import Request
from gateway.kimi.fake.ids import uuid_id
from gateway.kimi.fake.records import AccountState, Call, ChatRecord, MessageRecord
from gateway.kimi.fake.script import DEFAULT_SEARCH, Fault, Reply, has_fault, main_fault
from gateway.kimi.fake.state import State

CONNECT_JSON = "application/connect+json"
AGENT_SCENARIOS = frozenset({"SCENARIO_OK_COMPUTER", "SCENARIO_OK_COMPUTER_SWARM"})
AGENT_FIELDS = ("kimiplus_id", "kimiplusId", "kimi_plus_id", "kimiPlusId")
AGENT_MODELS = frozenset({"k3-agent", "k3-agent-swarm", "k28-agent-preview", "k2d6-agent", "k2d6-agent-ultra"})
DEFAULT_THINKING = "Let me think about this step by step."
_FAILING = frozenset(
    {"rate_limited", "overloaded", "block_exception", "content_filter", "context_too_long", "cut", "done_then_error"}
)


class TurnRefused(Exception):
    """The request cannot start a turn; ``error`` goes into the only (0x02) frame."""

    def __init__(self, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.error = connect_error(code, message, reason)


def read_envelope(body: bytes) -> dict[str, Any] | None:
    """The JSON of exactly one uncompressed request envelope, or None (doc 2.2.1)."""
    if len(body) < 5 or body[0] != 0:
        return None
    (length,) = struct.unpack(">I", body[1:5])
    if 5 + length != len(body):
        return None
    try:
        data = json.loads(body[5:])
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def handle_chat(fake: FakeKimi, req: Request, call: Call) -> None:
    if req.headers.get("content-type", "").split(";")[0].strip().lower() != CONNECT_JSON:
        call.status = 415  # doc 2.2.1: empty body
        await req.respond(415)
        return
    account = await authenticate(fake, req, call, protocol="connect")
    if account is None:
        return
    body = read_envelope(req.body)
    call.body = scrub(body) if body is not None else {"unenveloped_bytes": len(req.body)}
    with fake.lock:
        faults = fake.state.script.take_faults("chat", account.name)
    if await _pre_stream_fault(req, call, main_fault(faults)):
        return
    try:
        if body is None:
            raise TurnRefused("invalid_argument", "request body is not a Connect envelope")
        with fake.lock:
            plan, chat_id = _prepare(fake.state, account, body, faults)
    except TurnRefused as refused:
        await req.stream([end_frame(refused.error)], CONNECT_JSON)
        return
    try:
        await req.stream(build_turn(plan), CONNECT_JSON)
    finally:
        with fake.lock:
            fake.state.active_chats.discard(chat_id)


async def _pre_stream_fault(req: Request, call: Call, fault: Fault | None) -> bool:
    """Faults answered before any frame; True when one was."""
    if fault is None:
        return False
    if await respond_http_fault(req, call, fault):
        return True
    if fault.kind == "access_expired":
        call.status = 401
        error = connect_error("unauthenticated", "invalid user token: token is expired", "REASON_INVALID_AUTH_TOKEN")
        await req.respond_json(401, error)
    elif fault.kind == "rate_limited" and fault.variant == "http":
        call.status = 429  # the quota refusal as a unary-style Connect error (C.13: "HTTP or 0x02")
        await req.respond_json(429, _stream_error(fault), retry_headers(fault))
    elif fault.kind == "rate_limited" and fault.variant == "exception":
        return False  # an in-stream notice: block.exception inside the answer (connect_turn.py)
    elif fault.kind in ("auth_in_stream", "rate_limited", "stream_busy"):
        await req.stream([end_frame(_stream_error(fault))], CONNECT_JSON, retry_headers(fault))
    else:
        return False
    return True


def _stream_error(fault: Fault) -> dict[str, Any]:
    if fault.kind == "auth_in_stream":
        return connect_error("unauthenticated", "invalid user token", "REASON_INVALID_AUTH_TOKEN")
    if fault.kind == "stream_busy":
        code = fault.code or fault.variant or "failed_precondition"
        return connect_error(code, fault.message or "a reply is already being generated in this chat")
    debug: dict[str, Any] = {} if fault.retry_after is None else {"retryAfterSeconds": int(fault.retry_after)}
    if fault.reset_time is not None:
        debug["resetTime"] = fault.reset_time
    if fault.variant == "permission_denied":  # doc 2.13.3: agent models for free accounts
        return connect_error(
            "permission_denied", fault.message or "upgrade to use this model", "REASON_MEMBERSHIP_REQUIRED"
        )
    message = fault.message or "You have reached your usage limit. Please try again later."
    return connect_error(
        fault.code or "resource_exhausted", message, fault.reason or "REASON_USAGE_LIMIT_EXCEEDED", **debug
    )


def _prepare(state: State, account: AccountState, body: dict[str, Any], faults: list[Fault]) -> tuple[TurnPlan, str]:
    """Validate, store the user and assistant messages, and plan the reply. Caller holds the lock."""
    message = body.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("blocks"), list):
        raise TurnRefused("invalid_argument", "message.blocks is required")
    raw_options = body.get("options")
    options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
    scenario = str(field(body, "scenario") or field(message, "scenario") or "SCENARIO_CHAT")
    model = field(options, "model")
    # Every spelling of the agent field is accepted, and the one sent is recorded (C.3: kimiplus_id).
    agent_field = next((k for k in AGENT_FIELDS if body.get(k)), None)
    kimi_plus = body[agent_field] if agent_field else None
    if (scenario in AGENT_SCENARIOS or kimi_plus == "ok-computer" or model in AGENT_MODELS) and not account.paid:
        raise TurnRefused("permission_denied", "This model is available to members only", "REASON_MEMBERSHIP_REQUIRED")
    texts = [field(b, "text", {}).get("content", "") for b in message["blocks"] if isinstance(field(b, "text"), dict)]
    text = "\n".join(texts)
    files = _files(state, account, message["blocks"])
    if not text and not files:
        raise TurnRefused("invalid_argument", "message has no content")
    chat, parent_id, first_turn = _chat_and_parent(state, account, body, message)
    chat_frame = {"id": chat.id, "name": chat.name}
    reply = state.script.take_reply(account.name)
    effort = field(options, "reasoning_effort")
    thinking = effort != "REASONING_EFFORT_NONE" if effort else bool(options.get("thinking"))
    raw_tools = body.get("tools")
    tools: list[Any] = raw_tools if isinstance(raw_tools, list) else []
    wants_search = any(isinstance(t, dict) and t.get("type") == "TOOL_TYPE_SEARCH" for t in tools)
    if state.options.demo and reply == Reply():  # nothing scripted
        reply = demo_reply(text, search=wants_search, thinking=thinking)
    calls = reply.search_calls() or ((DEFAULT_SEARCH,) if "search" in text.lower() else ())
    calls = calls if wants_search else ()
    deltas = cite_deltas(reply.deltas(state.options.default_reply), reply, calls)
    # stray_thinking: reasoning although the request asked for none (C.6 says a client must hide it).
    stray = has_fault(faults, "stray_thinking") is not None
    think = _chunks(reply.thinking or DEFAULT_THINKING, reply) if thinking or stray else []
    user = MessageRecord(uuid_id(), parent_id, "user", text, files=[f["id"] for f in files])
    user.flags = {"scenario": scenario, "model": model, "thinking": thinking, "search": bool(calls)}
    user.flags |= {"reasoning_effort": effort, "agent_field": agent_field}
    fault = main_fault(faults)
    status = "MESSAGE_STATUS_CANCELLED" if fault and fault.kind in _FAILING else "MESSAGE_STATUS_COMPLETED"
    assistant = MessageRecord(uuid_id(), user.id, "assistant", "".join(deltas), "".join(think), status)
    chat.messages += [user, assistant]
    if first_turn:
        chat.name = text[:20] or "Untitled Chat"
    state.prompts.append((account.name, text))
    state.active_chats.add(chat.id)
    blocks = [{"id": "text_0_0", "text": {"content": text}}]
    blocks += [{"id": f"file_0_{i + 1}", "file": {"id": f["id"]}} for i, f in enumerate(files)]
    user_frame: dict[str, Any] = {
        "id": user.id,
        "parentId": parent_id,
        "role": "user",
        "status": "MESSAGE_STATUS_COMPLETED",
    }
    user_frame.update({"blocks": blocks, "scenario": scenario})
    plan = TurnPlan(
        chat_frame,
        first_turn,
        chat.name,
        files,
        user_frame,
        assistant.id,
        scenario,
        deltas,
        think,
        calls,
        reply,
        faults,
    )
    return plan, chat.id


def _chunks(text: str, reply: Reply) -> list[str]:
    size = reply.chunk_size or 8
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _files(state: State, account: AccountState, blocks: list[Any]) -> list[dict[str, Any]]:
    """File blocks must name a file this account uploaded and whose parse succeeded (doc 2.11.3)."""
    found = []
    for block in blocks:
        ref = field(block, "file")
        if not isinstance(ref, dict):
            continue
        record = state.files.get(str(ref.get("id")))
        if record is None or record.account != account.name or record.object_name:
            raise TurnRefused("invalid_argument", f"file {ref.get('id')!r} not found")
        if record.failed or time.monotonic() < record.ready_at:
            raise TurnRefused("invalid_argument", f"file {record.id!r} is not parsed")
        meta = {"name": record.name, "contentType": record.content_type, "sizeBytes": str(len(record.data))}
        found.append({"id": record.id, "meta": meta})
    return found


def _chat_and_parent(
    state: State, account: AccountState, body: dict[str, Any], message: dict[str, Any]
) -> tuple[ChatRecord, str, bool]:
    chat_id = str(field(body, "chat_id") or "")
    parent_id = str(field(message, "parent_id") or "")
    chat: ChatRecord | None
    if not chat_id:
        if parent_id:
            raise TurnRefused("invalid_argument", "parent message not found")
        chat = state.new_chat(account=account.name, protocol="connect", chat_id=uuid_id(), name="Untitled Chat")
        return chat, chat.id, True
    chat = state.live_chat(chat_id, account.name)
    if chat is None:
        raise TurnRefused("not_found", "chat not found")
    if chat.id in state.active_chats:
        raise TurnRefused(state.options.stream_busy_code, "a reply is already being generated in this chat")
    if parent_id and parent_id != chat.id and chat.message(parent_id) is None:
        raise TurnRefused("invalid_argument", "parent message not found")
    if not parent_id:
        parent_id = chat.messages[-1].id if chat.messages else chat.id
    return chat, parent_id, not chat.messages
