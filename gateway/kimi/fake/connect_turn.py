"""The frames of one Connect ``Chat`` reply (doc 2.7, 2.8, traces 2.15), faults included (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.kimi.fake.errors import connect_error
from gateway.kimi.fake.script import DEFAULT_CHUNK_SIZE, Fault, Reply, SearchHit, has_fault, main_fault
from gateway.kimi.fake.writes import CUT, CUT_AFTER_SECONDS, FLAG_END, Pause, Step, envelope, pace, shape_writes

CITE_OPEN, CITE_SEP, CITE_CLOSE = "\ue200", "\ue202", "\ue201"  # private-use delimiters (doc 2.7.2)
# The 2026 markers (kimi-web-protocol.md C.1): U+E3A0 opens, U+1F6E0 separates and closes (or U+E3A8 does),
# U+1F3A8 closes an article header.
C1_OPEN, C1_TOOL, C1_END, C1_PALETTE = "\ue3a0", "\U0001f6e0", "\ue3a8", "\U0001f3a8"
OVERLOAD_MESSAGE = "Too many people are chatting with Kimi right now. Subscribe to enter a priority queue!"


def end_frame(error: dict[str, Any] | None = None) -> bytes:
    return envelope({"error": error} if error else {}, FLAG_END)


@dataclasses.dataclass
class TurnPlan:
    chat: dict[str, Any]  # {"id", "name"} for the first frame
    first_turn: bool
    title: str
    files: list[dict[str, Any]]
    user_message: dict[str, Any]
    assistant_id: str
    scenario: str
    deltas: list[str]
    thinking: list[str]  # empty: no thinking phase
    searches: tuple[tuple[SearchHit, ...], ...]  # one tuple of hits per search call; empty: no search phase
    reply: Reply
    faults: list[Fault]


class _Frames:
    def __init__(self) -> None:
        self.offset = 0
        self.steps: list[Step] = []

    def event(self, op: str | None, mask: str | None, key: str, obj: dict[str, Any]) -> None:
        self.offset += 1
        frame: dict[str, Any] = {}
        if op:
            frame["op"] = op
        if mask:
            frame["mask"] = mask
        frame["eventOffset"] = self.offset
        frame[key] = obj
        self.steps.append(envelope(frame))

    def plain(self, key: str, obj: dict[str, Any]) -> None:
        """A non-mutating frame (heartbeat, notification, unknown kinds): repeats the current offset."""
        self.steps.append(envelope({"eventOffset": self.offset, key: obj}))

    def done(self) -> None:
        self.offset += 1
        self.steps.append(envelope({"eventOffset": self.offset, "done": {}}))


def build_turn(plan: TurnPlan) -> list[Step]:
    """Every write of the reply, in order, including pauses and the final ``0x02`` frame."""
    frames = _Frames()
    fault = main_fault(plan.faults)
    unknown = has_fault(plan.faults, "unknown_kinds")
    if unknown is not None and plan.deltas:
        plan = dataclasses.replace(plan, deltas=[*plan.deltas, *unmappable_markers(plan.deltas)])
    _opening(frames, plan)
    if fault and fault.kind == "stall":
        for _ in range(max(1, round(fault.duration / max(fault.interval, 0.001)))):
            frames.steps += [Pause(fault.interval)]
            frames.plain("heartbeat", {})
    blocks = iter(str(n) for n in range(1, 1000))
    if plan.thinking:
        flagged = has_fault(plan.faults, "think_flags")
        if flagged is None:
            _thinking(frames, plan.thinking, blocks)
        else:
            _thinking_as_text(frames, plan.thinking, next(blocks), multistage=flagged.variant == "multistage")
    for call, hits in enumerate(plan.searches):
        _search(frames, call, hits, next(blocks))
    ending = _answer(frames, plan, fault, next(blocks))
    if ending is None and unknown is not None and unknown.variant == "error":
        # A success ended by an error whose reason no catalogue names (the gateway counts it as drift).
        ending = connect_error("unavailable", unknown.message or "The upstream changed.", UNKNOWN_REASON)
    if ending is not None or not has_fault(plan.faults, "no_end_frame"):
        frames.steps.append(end_frame(ending))  # no_end_frame: a success closes after `done` (C.8)
    return _shape(frames.steps, plan.faults, plan.reply.delay)


def _opening(frames: _Frames, plan: TurnPlan) -> None:
    frames.event("set", None, "chat", plan.chat)
    for file in plan.files:
        frames.event("append", "chat.files", "chat", {"files": [file]})
    frames.plain("heartbeat", {})
    frames.event("set", "message", "message", plan.user_message)
    assistant = {
        "id": plan.assistant_id,
        "parentId": plan.user_message["id"],
        "role": "assistant",
        "status": "MESSAGE_STATUS_GENERATING",
        "scenario": plan.scenario,
    }
    frames.event("set", "message", "message", assistant)
    if has_fault(plan.faults, "degrade"):
        notice = {"type": "TYPE_MODEL_DEGRADE", "message": "Served by a fallback model."}
        frames.plain("notification", notice)
    if has_fault(plan.faults, "unknown_kinds"):
        artifact = {"id": "900", "parentId": "", "agentArtifact": {"kind": "slides", "title": "Deck"}}
        frames.event("set", "block.agentArtifact", "block", artifact)
        frames.plain("telemetry", {"latencyMs": 12})
        # An op and a mask path the catalogue of doc 2.7 / 2.7.1 does not have, on a harmless object.
        feedback = {"id": plan.assistant_id, "feedback": {"rating": "FEEDBACK_NONE"}}
        frames.event("merge", "message.feedback", "message", feedback)


def _thinking(frames: _Frames, chunks: list[str], blocks: Any) -> None:
    stage_id, think_id = next(blocks), next(blocks)
    stage = {"name": "STAGE_NAME_THINKING", "status": "STAGE_STATUS_START"}
    frames.event("set", "block.stage", "block", {"id": stage_id, "parentId": "", "stage": stage})
    frames.event("set", "block.think", "block", {"id": think_id, "parentId": stage_id, "think": {"content": chunks[0]}})
    for chunk in chunks[1:]:
        frames.event("append", "block.think.content", "block", {"id": think_id, "think": {"content": chunk}})
    stage = {"name": "STAGE_NAME_THINKING", "status": "STAGE_STATUS_END"}
    frames.event("set", "block.stage", "block", {"id": stage_id, "parentId": "", "stage": stage})


def _thinking_as_text(frames: _Frames, chunks: list[str], block_id: str, *, multistage: bool) -> None:
    """Reasoning as ``block.text`` flagged ``thinking``, or as text inside a thinking ``block.multiStage``
    (kimi-web-protocol.md C.8, shapes of peers' parsers)."""
    first: dict[str, Any] = {"id": block_id, "parentId": "", "text": {"content": chunks[0]}}
    if multistage:
        first["multiStage"] = {"stages": [{"name": "STAGE_NAME_THINKING", "status": "STAGE_STATUS_START"}]}
        frames.event("set", "block.multiStage,block.text", "block", first)
    else:
        first["text"]["flags"] = "thinking"
        frames.event("set", "block.text", "block", first)
    for chunk in chunks[1:]:
        frames.event("append", "block.text.content", "block", {"id": block_id, "text": {"content": chunk}})
    if multistage:
        done = {"stages": [{"name": "STAGE_NAME_THINKING", "status": "completed"}]}
        frames.event("set", "block.multiStage", "block", {"id": block_id, "multiStage": done})


def search_result(call: int, index: int, hit: SearchHit) -> dict[str, Any]:
    base = {"title": hit.title, "url": hit.url, "siteName": hit.site, "snippet": hit.snippet}
    return {"id": str(index + 1), "refIndex": f"web_search:{call}#{index}", "base": base}


def _search(frames: _Frames, call: int, hits: tuple[SearchHit, ...], block_id: str) -> None:
    tool = {"toolCallId": f"web_search_{call}", "name": "web_search", "status": "STATUS_PENDING"}
    frames.event("set", "block.tool", "block", {"id": block_id, "parentId": "", "tool": tool})
    args = '{"queries":["' + hits[0].title.replace('"', "") + '"]}'
    for part in (args[: len(args) // 2], args[len(args) // 2 :]):
        frames.event("append", "block.tool.args", "block", {"id": block_id, "tool": {"args": part}})
    running = {"toolCallId": f"web_search:{call}", "args": args, "status": "STATUS_RUNNING"}
    mask = "block.tool.args,block.tool.status,block.tool.toolCallId"
    frames.event("set", mask, "block", {"id": block_id, "tool": running})
    frames.plain("heartbeat", {})
    contents = [{"searchResult": search_result(call, i, hit)} for i, hit in enumerate(hits)]
    done = {"contents": contents, "status": "STATUS_DONE"}
    frames.event("set", "block.tool.contents,block.tool.status", "block", {"id": block_id, "tool": done})


def _answer(frames: _Frames, plan: TurnPlan, fault: Fault | None, block_id: str) -> dict[str, Any] | None:
    """Text, status and ``done`` frames; returns the error of the final ``0x02`` frame (None = success)."""
    kind = fault.kind if fault else ""
    comma = has_fault(plan.faults, "comma_masks") is not None
    deltas = [] if kind == "empty_reply" else plan.deltas
    shape = _TextShape(
        comma=comma,
        opless=has_fault(plan.faults, "opless"),
        split=has_fault(plan.faults, "split_blocks") is not None,
        hidden=has_fault(plan.faults, "blocks_only") is not None,
    )
    if kind == "overloaded":
        _text(frames, deltas[: fault.after_events], block_id, shape)  # type: ignore[union-attr]
        frames.done()
        reason = fault.reason or "REASON_SERVER_OVERLOADED_FOR_FREE_USER"  # type: ignore[union-attr]
        return connect_error(fault.code or "resource_exhausted", fault.message or OVERLOAD_MESSAGE, reason)  # type: ignore[union-attr]
    status = "MESSAGE_STATUS_COMPLETED"
    if kind in ("context_too_long", "rate_limited"):
        _exception(frames, fault, block_id)  # type: ignore[arg-type]
        status = "MESSAGE_STATUS_CANCELLED"
    elif kind in ("block_exception", "content_filter"):
        assert fault is not None
        _text(frames, deltas[: max(1, fault.after_events)], block_id, shape)
        _exception(frames, fault, str(int(block_id) + 1))
        status = "MESSAGE_STATUS_CANCELLED" if kind == "content_filter" else status
    else:
        _text(frames, deltas, block_id, shape)
        if plan.first_turn:
            frames.event("set", "chat.name", "chat", {"name": plan.title})
        frames.plain("heartbeat", {})
        if plan.searches:
            _refs(frames, plan)
    mask = "message.id,message.status" if comma else "message.status"
    if shape.hidden:
        # The answer only in the completed assistant message's blocks, no block.text frame (C.8).
        blocks = [{"id": block_id, "text": {"content": "".join(deltas)}}]
        finished = {"id": plan.assistant_id, "role": "assistant", "status": status, "blocks": blocks}
        frames.event("set", "message", "message", finished | {"parentId": plan.user_message["id"]})
    else:
        frames.event("set", mask, "message", {"id": plan.assistant_id, "status": status})
    frames.done()
    if kind == "done_then_error":
        assert fault is not None
        return connect_error(fault.code or "internal", fault.message or "internal error", fault.reason)
    return None


@dataclasses.dataclass(frozen=True)
class _TextShape:
    """How the answer text is written: the modifier faults comma_masks, opless, split_blocks, blocks_only."""

    comma: bool = False
    opless: Fault | None = None  # variant "cumulative": each frame repeats the block so far
    split: bool = False
    hidden: bool = False


def _text(frames: _Frames, deltas: list[str], block_id: str, shape: _TextShape) -> None:
    if not deltas or shape.hidden:
        return
    if shape.split and len(deltas) > 1:
        # Two text blocks with their own ids: separate segments (C.8).
        half = len(deltas) // 2
        _text_block(frames, deltas[:half], block_id, shape)
        _text_block(frames, deltas[half:], str(int(block_id) + 100), shape)
    else:
        _text_block(frames, deltas, block_id, shape)


def _text_block(frames: _Frames, deltas: list[str], block_id: str, shape: _TextShape) -> None:
    mask = "block.text,block.parentId" if shape.comma else "block.text"
    frames.event("set", mask, "block", {"id": block_id, "parentId": "", "text": {"content": deltas[0]}})
    cumulative = shape.opless is not None and shape.opless.variant == "cumulative"
    so_far = deltas[0]
    for delta in deltas[1:]:
        so_far += delta
        # opless: no `op` key (C.8), the content a delta or (cumulative) everything so far.
        op = None if shape.opless else "append"
        content = so_far if cumulative else delta
        frames.event(op, "block.text.content", "block", {"id": block_id, "text": {"content": content}})


def _exception(frames: _Frames, fault: Fault, block_id: str) -> None:
    if fault.kind == "content_filter":
        reason, text = fault.reason or "REASON_CONTENT_FILTER", "This content cannot be displayed."
    elif fault.kind == "context_too_long":
        reason, text = fault.reason or "REASON_TOKEN_LENGTH_TOO_LONG", "The conversation is too long."
    elif fault.kind == "rate_limited":  # variant="exception": a quota notice in the stream (C.13)
        reason, text = fault.reason or "REASON_QUOTA_EXCEEDED", "You have reached your usage limit."
    else:
        reason, text = fault.reason or "REASON_COMPLETION_OVERLOADED", "不好意思，刚刚和Kimi聊的人太多了。"
    error: dict[str, Any] = {
        "reason": reason,
        "localizedMessage": {"locale": "zh-CN", "message": fault.message or text},
    }
    error["severity"] = "SEVERITY_BLOCK_RETRACT"
    if fault.reset_time is not None:
        error["resetTime"] = fault.reset_time
    if fault.retry_after is not None:
        error["retryAfterSeconds"] = int(fault.retry_after)
    frames.event("set", "block.exception", "block", {"id": block_id, "exception": {"error": error}})


def _refs(frames: _Frames, plan: TurnPlan) -> None:
    keyed = [
        (call, i, search_result(call, i, hit)) for call, hits in enumerate(plan.searches) for i, hit in enumerate(hits)
    ]
    refs = {"id": plan.assistant_id, "refs": {"usedSearchChunks": [chunk for _, _, chunk in keyed]}}
    frames.event("set", "message.refs.usedSearchChunks", "message", refs)
    if plan.reply.citations == "cite":
        references = [
            {"matchedText": cite_token(call, i), "items": [{"search": {"base": chunk["base"]}}]}
            for call, i, chunk in keyed
        ]
        frames.event("set", "message.references", "message", {"id": plan.assistant_id, "references": references})


def cite_token(call: int, index: int) -> str:
    return f"{CITE_OPEN}cite{CITE_SEP}web_search:{call}#{index}{CITE_CLOSE}"


def inline_cite(call: int, index: int, hit: SearchHit, *, close: str = C1_TOOL) -> str:
    """C.1 inline citation, closed by U+1F6E0 or U+E3A8 (C.1 allows both)."""
    return f"{C1_OPEN}cite{C1_TOOL}web_search:{call}#{index}:~:text={hit.snippet or hit.title}{close}"


# What `unknown_kinds` appends to the answer: citations naming search calls that never ran (C.1 forms).
UNMAPPED_REFS = ("web_search:7#7", "web_search:9#9")
UNKNOWN_REASON = "REASON_FAKE_UNKNOWN"  # `unknown_kinds` with variant "error"


def unmappable_markers(deltas: list[str]) -> list[str]:
    """An inline citation quoting the answer and a bare reference, both naming no result: a gateway
    strips them (C.1), so the answer text is unchanged."""
    quote = "".join(deltas)[:24]
    inline = f"{C1_OPEN}cite{C1_TOOL}{UNMAPPED_REFS[0]}:~:text={quote}{C1_TOOL}"
    return [inline, f"{C1_TOOL}{UNMAPPED_REFS[1]}{C1_TOOL}"]


def bare_reference(call: int, index: int) -> str:
    return f"{C1_TOOL}web_search:{call}#{index}{C1_TOOL}"


def article_header(title: str) -> str:
    return f"{C1_OPEN}article{C1_TOOL}{title}{C1_PALETTE}"


def cite_deltas(deltas: list[str], reply: Reply, calls: tuple[tuple[SearchHit, ...], ...]) -> list[str]:
    """The answer's deltas with the reply's citation style applied for these search calls (README.md)."""
    style = reply.citations
    if not calls or not style:
        return deltas
    keyed = [(call, i, hit) for call, hits in enumerate(calls) for i, hit in enumerate(hits)]
    if style == "caret":
        return [*deltas, " " + "".join(f"[^{n}^]" for n in range(1, len(keyed) + 1))]
    if style == "cite":
        return [*deltas, " " + "".join(cite_token(call, i) for call, i, _ in keyed)]
    if style == "bare":
        marked = " " + "".join(bare_reference(call, i) for call, i, _ in keyed)
    else:
        # Every second citation closes with U+E3A8, so one answer has both closers.
        closers = [C1_TOOL, C1_END] * len(keyed)
        marked = " " + "".join(inline_cite(c, i, hit, close=closers[n]) for n, (c, i, hit) in enumerate(keyed))
    # The C.1 styles stream their markers in pieces, so each marker is split across frames (C.1's test advice).
    size = reply.chunk_size or DEFAULT_CHUNK_SIZE
    pieces = _split(marked, size)
    if style == "article":  # a header first, then the answer with inline citations
        return [*_split(article_header(calls[0][0].title), size), *deltas, *pieces]
    return [*deltas, *pieces]


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _shape(steps: list[Step], faults: list[Fault], delay: float) -> list[Step]:
    """Apply the write-level faults: cut, silence, coalesce, split, per-event delay."""
    fault = main_fault(faults)
    if fault and fault.kind in ("cut", "silence"):
        # never past the final 0x02 frame: a cut stream must lack it
        position = min(_after_data_frames(steps, fault.after_events), len(steps) - 1)
        if fault.kind == "cut":
            steps = steps[:position] + [Pause(CUT_AFTER_SECONDS), CUT]
        else:
            steps = steps[:position] + [Pause(fault.duration)] + steps[position:]
    steps = pace(steps, delay)
    split, coalesce = has_fault(faults, "split_writes"), has_fault(faults, "coalesce")
    return shape_writes(steps, split=split is not None, coalesce=coalesce is not None, header_cut=2)


def _after_data_frames(steps: list[Step], count: int) -> int:
    seen = 0
    for index, step in enumerate(steps):
        if seen >= count:
            return index
        if isinstance(step, bytes) and step[:1] == b"\x00":
            seen += 1
    return len(steps)
