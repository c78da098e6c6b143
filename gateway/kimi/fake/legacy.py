"""Legacy REST + SSE endpoints (doc Part 1): user, chats, completion stream, delete, research usage."""

from __future__ import annotations

import re
import time
from typing import Any

from gateway.kimi.fake.common import authenticate, legacy_error, respond_http_fault, retry_headers
from gateway.kimi.fake.connect import rfc3339
from gateway.kimi.fake.connect_chat import DEFAULT_THINKING
from gateway.kimi.fake.connect_turn import cite_deltas
from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.demo import demo_reply
from gateway.kimi.fake.files import parse_events, remaining_parse_delay
from gateway.kimi.fake.http import Request
from gateway.kimi.fake.ids import xid
from gateway.kimi.fake.legacy_turn import LegacyPlan, build_events, quota_detail
from gateway.kimi.fake.records import AccountState, Call, MessageRecord
from gateway.kimi.fake.script import DEFAULT_SEARCH, Fault, Reply, has_fault, main_fault
from gateway.kimi.fake.state import State
from gateway.kimi.fake.writes import Pause, Step, shape_writes

SSE = "text/event-stream; charset=utf-8"
K1_AGENT = "crm40ee9e5jvhsn7ptcg"  # doc 1.12 / 1.16
UNTITLED = "未命名会话"
_URL_TAG = re.compile(r"<url [^>]*>(.*?)</url>", re.DOTALL)  # doc 1.8: the web UI wraps typed URLs


class Refused(Exception):
    def __init__(self, status: int, error_type: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.detail = status, error_type, detail


async def user(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is not None:
        await req.respond_json(200, {"id": account.user_id, "name": account.name})


async def create_chat(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    body = req.json_object()
    call.body = body
    with fake.lock:
        fault = main_fault(fake.state.script.take_faults("create_chat", account.name))
    if await _pre_fault(req, call, fault):
        return
    with fake.lock:
        chat = fake.state.new_chat(
            account=account.name, protocol="legacy", chat_id=xid(), name=str(body.get("name") or UNTITLED)
        )
    now = rfc3339(time.time())
    await req.respond_json(200, {"id": chat.id, "name": chat.name, "created_at": now, "updated_at": now})


async def delete_chat(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    chat_id = req.path.rstrip("/").rsplit("/", 1)[-1]
    with fake.lock:
        chat = fake.state.live_chat(chat_id, account.name)
        # doc 2.10: the legacy DELETE cannot delete chats of the Connect stack (UUID ids)
        deleted = chat is not None and chat.protocol == "legacy" and fake.state.delete_chat(chat_id, account.name)
    if not deleted:
        await legacy_error(req, call, 404, "chat.not_found", "找不到指定的会话")
        return
    await req.respond_json(200, {})


async def research_usage(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    with fake.lock:
        total, used = fake.state.options.research_total, account.research_used
    await req.respond_json(200, {"remain": max(0, total - used), "total": total, "used": used})


async def traffic(fake: FakeKimi, req: Request, call: Call) -> None:
    """The browser-imitation endpoints of doc 1.13: 200 with a harmless body."""
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    call.body = req.json()
    await req.respond_json(200, {"items": []} if req.path.endswith(("/list", "/search", "/history")) else {})


async def parse_process(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    body = req.json_object()
    call.body = body
    raw_ids = body.get("ids")
    ids: list[Any] = raw_ids if isinstance(raw_ids, list) else []
    with fake.lock:
        events = parse_events(fake.state, account, ids)
        delay = remaining_parse_delay(fake.state, ids)
        faults = fake.state.script.take_faults("parse", account.name)
    if events is None:
        await legacy_error(req, call, 400, "validation.error", "文件不存在", ["unknown file id"])
        return
    half = len(events) // 2
    steps: list[Step] = [*events[:half], Pause(delay), *events[half:]] if delay > 0 else list(events)
    split = any(f.kind == "split_writes" for f in faults)
    coalesce = any(f.kind == "coalesce" for f in faults)
    await req.stream(shape_writes(steps, split=split, coalesce=coalesce, header_cut=3), SSE)


async def _pre_fault(req: Request, call: Call, fault: Fault | None) -> bool:
    """Faults answered with a plain HTTP error before any event; True when one was."""
    if fault is None:
        return False
    if await respond_http_fault(req, call, fault):
        return True
    if fault.kind in ("access_expired", "auth_in_stream"):
        await legacy_error(req, call, 401, "auth.token.invalid", "您的授权已过期，请重新登录")
    elif fault.kind == "stream_busy":
        await legacy_error(req, call, 400, "chat.user_stream_pushing", "当前会话正在输出中，请稍后再试")
    elif fault.kind == "rate_limited" and fault.variant == "http":
        detail = quota_detail(fault)
        call.status = 429
        body = {"error_type": "chat.quota_exceeded", "message": "您的使用次数已达上限", "detail": detail}
        await req.respond_json(429, body, retry_headers(fault))
    else:
        return False
    return True


async def stream(fake: FakeKimi, req: Request, call: Call) -> None:
    """``POST /api/chat/{id}/completion/stream`` (doc 1.7, 1.10)."""
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    body = req.json_object()
    call.body = body
    chat_id = req.path.split("/")[3]
    with fake.lock:
        faults = fake.state.script.take_faults("stream", account.name)
    if await _pre_fault(req, call, main_fault(faults)):
        return
    try:
        with fake.lock:
            plan = _prepare(fake.state, account, chat_id, body, faults)
    except Refused as refused:
        await legacy_error(req, call, refused.status, refused.error_type, str(refused), refused.detail)
        return
    try:
        await req.stream(build_events(plan), SSE)
    finally:
        with fake.lock:
            fake.state.active_chats.discard(chat_id)


def _prepare(
    state: State, account: AccountState, chat_id: str, body: dict[str, Any], faults: list[Fault]
) -> LegacyPlan:
    chat = state.live_chat(chat_id, account.name)
    if chat is None:
        raise Refused(404, "chat.not_found", "找不到指定的会话")
    if chat_id in state.active_chats:  # doc 1.15: one active stream per chat
        raise Refused(400, "chat.user_stream_pushing", "当前会话正在输出中，请稍后再试")
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    first = messages[0] if messages and isinstance(messages[0], dict) else {}
    content = str(first.get("content") or "")
    continuing = body.get("action") == "continue"
    if not content.strip() and not continuing:
        raise Refused(400, "validation.error", "参数错误", ["Content is a required field"])
    text = _URL_TAG.sub(r"\1", content)
    quota_exhausted = False
    if body.get("use_research"):
        quota_exhausted = account.research_used >= state.options.research_total
        account.research_used += 0 if quota_exhausted else 1
    reply = state.script.take_reply(account.name)
    model = str(body.get("model") or "")
    thinking = "k1" in model or body.get("kimiplus_id") == K1_AGENT
    if state.options.demo and reply == Reply():  # nothing scripted
        reply = demo_reply(text, search=bool(body.get("use_search")), thinking=thinking)
    # One search per legacy turn (doc 1.11): several scripted calls are read as one list, call 0.
    hits = tuple(hit for call in reply.search_calls() for hit in call) or (
        DEFAULT_SEARCH if "search" in text.lower() else ()
    )
    hits = hits if body.get("use_search") else ()
    deltas = cite_deltas(reply.deltas(state.options.default_reply), reply, (hits,) if hits else ())
    think_text = reply.thinking or DEFAULT_THINKING
    size = reply.chunk_size or 8
    stray = has_fault(faults, "stray_thinking") is not None  # reasoning nobody asked for (C.6)
    think = [think_text[i : i + size] for i in range(0, len(think_text), size)] if thinking or stray else []
    group, req_id, resp_id = xid(), xid(), xid()
    parent = chat.messages[-1].id if chat.messages else chat.id
    raw_refs = body.get("refs")
    refs: list[Any] = raw_refs if isinstance(raw_refs, list) else []
    flags = {k: body.get(k) for k in ("use_search", "use_research", "use_math", "kimiplus_id", "model", "action")}
    user_msg = MessageRecord(
        req_id, parent, "user", " " if continuing else text, files=[str(r) for r in refs], flags=flags
    )
    chat.messages += [user_msg, MessageRecord(resp_id, req_id, "assistant", "".join(deltas), "".join(think))]
    chat.open_segment = req_id if reply.length else None
    if not continuing:
        state.prompts.append((account.name, text))
    state.active_chats.add(chat_id)
    req_event = {"id": req_id, "group_id": group, "content": content, "refs": refs}
    return LegacyPlan(
        req_event, {"id": resp_id, "group_id": group}, deltas, think, hits, reply, faults, quota_exhausted
    )
