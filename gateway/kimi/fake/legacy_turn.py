"""The SSE events of one legacy completion (doc 1.9-1.12, traces 1.19), faults included (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.kimi.fake.connect_turn import unmappable_markers
from gateway.kimi.fake.script import Fault, Reply, SearchHit, has_fault, main_fault
from gateway.kimi.fake.writes import CUT, CUT_AFTER_SECONDS, Pause, Step, pace, shape_writes, sse

QUOTA_ERROR = {"error_type": "chat.quota_exceeded", "message": "您的使用次数已达上限，请稍后再试", "detail": None}
OVERLOAD_ERROR = {
    "error_type": "openai.completion.stream",
    "message": "Kimi 现在有点累了，晚一点再来问问我吧",
    "detail": None,
}
TOO_LONG_ERROR = {
    "error_type": "openai.completion.token_length_too_long",
    "message": "The input exceeds 200,000 characters",
    "detail": None,
}
UNKNOWN_ERROR = {"error_type": "chat.fake_unknown", "message": "上游变了", "detail": None}  # unknown_kinds "error"
FILTER_ERROR = {
    "error_type": "openai.completion.content_filter",
    "message": "内容涉及不当信息，已停止输出",
    "detail": None,
}


@dataclasses.dataclass
class LegacyPlan:
    req: dict[str, Any]  # the `req` event (without "event")
    resp: dict[str, Any]
    deltas: list[str]
    thinking: list[str]
    search: tuple[SearchHit, ...]
    reply: Reply
    faults: list[Fault]
    quota_exhausted: bool = False


def build_events(plan: LegacyPlan) -> list[Step]:
    fault = main_fault(plan.faults)
    kind = fault.kind if fault else ""
    steps: list[Step] = [sse({"event": "req", **plan.req}), sse({"event": "resp", **plan.resp})]
    unknown = has_fault(plan.faults, "unknown_kinds")
    if unknown is not None:  # doc 1.10: never seen upstream; proves they are ignored (and counted)
        steps += [sse({"event": "rename", "text": "x"}), sse({"event": "loading"}), sse({"event": "ping"})]
        # A key and a search_plus msg.type the catalogue (doc 1.10, 1.11) does not have.
        steps += [sse({"event": "cmpl", "text": "", "view": "plain"})]
        steps += [sse({"event": "search_plus", "msg": {"type": "thinking_res"}})]
        if plan.deltas:
            plan = dataclasses.replace(plan, deltas=[*plan.deltas, *unmappable_markers(plan.deltas)])
    if kind == "rate_limited" or plan.quota_exhausted:
        return _shape([*steps, _error(QUOTA_ERROR, fault)], plan)
    if fault and kind == "stall":
        for _ in range(max(1, round(fault.duration / max(fault.interval, 0.001)))):
            steps += [Pause(fault.interval), sse({"event": "ping"})]
    steps += [sse({"event": "k1", "text": chunk}) for chunk in plan.thinking]
    if plan.thinking:
        steps.append(sse({"event": "k1", "summary": "Reasoned about the question"}))
    if plan.search:
        steps += _search(plan.search)
    if fault and kind == "context_too_long":
        return _shape([*steps, _error(TOO_LONG_ERROR, fault)], plan)
    deltas = [] if kind == "empty_reply" else plan.deltas
    if fault and kind in ("overloaded", "block_exception", "content_filter"):
        cut_at = fault.after_events if kind == "overloaded" else max(1, fault.after_events)
        steps += [sse({"event": "cmpl", "text": d}) for d in deltas[:cut_at]]
        return _shape([*steps, _error(FILTER_ERROR if kind == "content_filter" else OVERLOAD_ERROR, fault)], plan)
    steps += [sse({"event": "cmpl", "text": d}) for d in deltas]
    if kind == "done_then_error":
        return _shape([*steps, _error(OVERLOAD_ERROR, fault)], plan)
    if plan.reply.length:
        steps.append(sse({"event": "length"}))
    if unknown is not None and unknown.variant == "error":
        return _shape([*steps, _error(UNKNOWN_ERROR, None)], plan)
    steps.append(sse({"event": "all_done"}))
    return _shape(steps, plan)


def quota_detail(fault: Fault | None) -> dict[str, Any] | None:
    """A quota refusal's ``detail`` (C.13): ``retry_after`` seconds and/or ``resetTime`` when scripted."""
    if fault is None:
        return None
    detail: dict[str, Any] = {}
    if fault.retry_after is not None:
        detail["retry_after"] = fault.retry_after
    if fault.reset_time is not None:
        detail["resetTime"] = fault.reset_time
    return detail or None


def _error(base: dict[str, Any], fault: Fault | None) -> bytes:
    error = dict(base)
    if base is QUOTA_ERROR:
        error["detail"] = quota_detail(fault)
    if fault is not None and fault.message:
        error["message"] = fault.message
    if fault is not None and fault.code:
        error["error_type"] = fault.code
    return sse({"event": "error", "error": error})


def _search(hits: tuple[SearchHit, ...]) -> list[Step]:
    target = hits[0].title
    steps: list[Step] = [
        sse({"event": "debug", "message": {"need2search": True, "search_target": target, "search_language": "en"}}),
        sse({"event": "search_plus", "msg": {"type": "start"}}),
        sse({"event": "search_plus", "msg": {"type": "start_res"}}),
    ]
    for n, hit in enumerate(hits, start=1):
        steps.append(
            sse(
                {
                    "event": "search_plus",
                    "msg": {"type": "get_res", "successNum": n, "title": hit.title, "url": hit.url},
                }
            )
        )
    steps.append(sse({"event": "search_plus", "msg": {"type": "done", "urlList": [h.url for h in hits]}}))
    cards = [{"idx": n, "title": h.title, "url": h.url, "abstract": h.snippet} for n, h in enumerate(hits, start=1)]
    steps.append(sse({"event": "ref_docs", "ref_cards": cards}))
    return steps


def _shape(steps: list[Step], plan: LegacyPlan) -> list[Step]:
    fault = main_fault(plan.faults)
    if fault and fault.kind in ("cut", "silence"):
        events = [i for i, s in enumerate(steps) if isinstance(s, bytes)]
        position = events[fault.after_events] if fault.after_events < len(events) else len(steps)
        if fault.kind == "cut":
            # never past the last event: a cut stream must lack all_done
            steps = steps[: min(position, events[-1])] + [Pause(CUT_AFTER_SECONDS), CUT]
        else:
            steps = steps[:position] + [Pause(fault.duration)] + steps[position:]
    steps = pace(steps, plan.reply.delay)
    split, coalesce = has_fault(plan.faults, "split_writes"), has_fault(plan.faults, "coalesce")
    return shape_writes(steps, split=split is not None, coalesce=coalesce is not None, header_cut=3)
