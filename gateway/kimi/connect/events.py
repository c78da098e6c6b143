"""Connect stream frames -> normalised events (protocol doc 2.7, 2.8, 2.13). Pure: no I/O.

``ConnectTranslator.feed(frame)`` returns the events one frame produces, or raises a ``KimiError``
when the frame reports a failure; ``finish()`` is called at EOF and raises when the stream ended
without its end-of-stream frame. ``Done`` is emitted from the ``0x02`` frame, not from the ``done``
data frame, because an error end-stream frame can follow ``done`` (doc 2.2.1); only a stream that
closes after ``done`` without any end frame ends at EOF (C.8).

What the catalogue does not name (a frame key, block kind, ``op``, ``mask`` path, error reason) is
ignored as before and noted in the turn's ``Drift`` (shapes.py, gateway/kimi/drift.py).

Shapes tolerated besides the documented ones (kimi-web-protocol.md C.8): reasoning as ``block.text``
flagged ``thinking`` or inside a thinking ``block.multiStage``; frames without ``op``; the answer only
in the completed assistant ``message.blocks``; successive text blocks, joined with a newline.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson

from gateway.kimi import quota
from gateway.kimi.base import (
    AuthError,
    BadRequest,
    ChatCreated,
    ChatNotFound,
    ContentFiltered,
    ContextTooLong,
    Done,
    Heartbeat,
    KimiError,
    KimiEvent,
    Overloaded,
    ProtocolError,
    RateLimited,
    StreamBusy,
    TextDelta,
    ThinkingDelta,
    Unavailable,
)
from gateway.kimi.citations import CitationTracker
from gateway.kimi.connect.shapes import note_error, note_frame
from gateway.kimi.drift import Drift
from gateway.kimi.framing import ConnectFrame

log = logging.getLogger(__name__)

OVERLOADED_FREE = "REASON_SERVER_OVERLOADED_FOR_FREE_USER"
# The context is full (protocol doc C.2): a non-retryable error, never an overload.
TOKEN_LENGTH_TOO_LONG = "REASON_TOKEN_LENGTH_TOO_LONG"
_FILTER_WORDS = ("SENSITIVE", "FILTER", "CENSOR", "MODERAT", "VIOLAT", "COMPLIANCE")
THINKING_STAGE = "STAGE_NAME_THINKING"
_STAGE_OVER = ("STAGE_STATUS_END", "STAGE_STATUS_COMPLETED", "completed", "end", "done")


class ConnectTranslator:
    """State of one Connect ``Chat`` stream. ``progress`` counts text/thinking/tool frames (the
    no-progress timeout watches it; heartbeats do not move it). ``drift`` collects what it did not
    understand (its own when none is given)."""

    def __init__(self, *, continuing: bool = False, drift: Drift | None = None) -> None:
        self.continuing = continuing
        self.drift = drift if drift is not None else Drift()
        self.chat_id: str | None = None
        self.assistant_id: str | None = None
        self.progress = 0
        self.ended = False
        self._blocks: dict[tuple[str, str], str] = {}  # (block id, kind) -> content so far
        self._text_seen = False
        self._done_seen = False
        self._thinking_blocks: set[str] = set()  # text blocks that carry reasoning (C.8)
        self._thinking_stages: set[str] = set()  # open thinking stage / multiStage blocks
        self._text_block: str | None = None  # the text block the last answer text came from
        self._ends_with_newline = True  # the answer so far ends a line (or is empty)
        self._message_text = ""  # the answer as the completed assistant message carries it (C.8)
        self._cites = CitationTracker(drift=self.drift)
        self._tool_calls: dict[str, str] = {}  # block id -> its tool call id ("web_search:1")

    def feed(self, frame: ConnectFrame) -> list[KimiEvent]:
        if self.ended:
            return []  # nothing may follow the end-stream frame; ignore rather than guess
        payload = _json(frame.data)
        if frame.end_stream:
            self.ended = True
            return self._end(payload)
        return self._event(payload)

    def finish(self) -> list[KimiEvent]:
        if self.ended:
            return []
        if not self._done_seen:
            raise ProtocolError("Connect stream ended without its end-of-stream frame")
        # Closed after `done` without the 0x02 frame: older peers accept it (C.8); with text it is a success.
        self.ended = True
        return self._end({})

    # -- frames -------------------------------------------------------------------------------

    def _end(self, payload: dict[str, Any]) -> list[KimiEvent]:
        error = payload.get("error")
        if isinstance(error, dict):
            raise connect_error(error, continuing=self.continuing, drift=self.drift)
        events: list[KimiEvent] = []
        if not self._text_seen and self._message_text:
            events += self._answer_text(self._message_text)
        tail = self._cites.flush_text()
        if tail:
            events.append(TextDelta(tail))
        if not self._text_seen:
            # Throttled replies can complete with no content at all (doc 2.13.2): retry elsewhere.
            raise Overloaded("upstream completed with an empty reply", upstream_code="empty_reply")
        events.append(Done(finish_reason="stop", message_id=self.assistant_id))
        return events

    def _event(self, payload: dict[str, Any]) -> list[KimiEvent]:
        note_frame(payload, self.drift)
        if "heartbeat" in payload:
            return [Heartbeat()]
        if "done" in payload:
            self._done_seen = True
            return []
        if isinstance(payload.get("block"), dict):
            op = payload.get("op")
            return self._block(payload["block"], op=op if isinstance(op, str) else None)
        if isinstance(payload.get("message"), dict):
            return self._message(payload["message"])
        if isinstance(payload.get("chat"), dict):
            return self._chat(payload["chat"])
        log.debug("ignoring Connect frame with keys %s", sorted(payload))
        return []

    def _chat(self, chat: dict[str, Any]) -> list[KimiEvent]:
        chat_id = chat.get("id")
        if self.chat_id is None and isinstance(chat_id, str) and chat_id:
            self.chat_id = chat_id
            return [ChatCreated(chat_id)]
        return []

    def _message(self, message: dict[str, Any]) -> list[KimiEvent]:
        if message.get("role") == "assistant" and message.get("id"):
            self.assistant_id = str(message["id"])
        events: list[KimiEvent] = []
        refs = message.get("refs")
        if isinstance(refs, dict):
            for key in ("searchChunks", "usedSearchChunks"):
                events += self._cites.add_chunks(refs.get(key))
        if message.get("role") == "assistant" or (message.get("id") and message.get("id") == self.assistant_id):
            self._note_message_text(message.get("blocks"))
        references = message.get("references")
        if isinstance(references, list):
            events += self._cites.add_references(references)
        return self._with_released_text(events) if refs or references else events

    def _note_message_text(self, blocks: object) -> None:
        """Keep the answer text of the assistant message's ``blocks``: some streams carry it only there,
        with no ``block.text`` frames (C.8); it is used at the end when no text arrived otherwise."""
        if not isinstance(blocks, list):
            return
        texts = [b["text"].get("content") for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), dict)]
        joined = "\n".join(t for t in texts if isinstance(t, str) and t)
        if joined:
            self._message_text = joined

    def _block(self, block: dict[str, Any], *, op: str | None) -> list[KimiEvent]:
        block_id = str(block.get("id", ""))
        if isinstance(block.get("exception"), dict):
            raise exception_error(block["exception"], drift=self.drift)
        self._note_stages(block_id, block)
        if isinstance(block.get("text"), dict):
            kind: Literal["text", "think"] = "think" if self._is_reasoning(block_id, block) else "text"
            return self._content(block_id, kind, block["text"].get("content"), op=op)
        if isinstance(block.get("think"), dict):
            return self._content(block_id, "think", block["think"].get("content"), op=op)
        if isinstance(block.get("tool"), dict):
            self.progress += 1
            tool = block["tool"]
            if isinstance(tool.get("toolCallId"), str):
                self._tool_calls[block_id] = tool["toolCallId"]
            # Keyed by call, so "web_search:1#0" finds call 1's result #0 (kimi-web-protocol.md C.1).
            found = self._cites.add_tool_contents(tool.get("contents"), call_id=self._tool_calls.get(block_id))
            return self._with_released_text(list(found))
        if isinstance(block.get("search"), dict):
            self.progress += 1
            return self._with_released_text(list(self._cites.add_web_pages(block["search"].get("webPages"))))
        if not isinstance(block.get("stage") or block.get("multiStage"), dict):
            log.debug("ignoring Connect block kind %s", sorted(k for k in block if k not in ("id", "parentId")))
        return []

    def _with_released_text(self, events: list[KimiEvent]) -> list[KimiEvent]:
        """New results may resolve a marker whose text was held back: send that text now."""
        text = self._cites.release_text()
        return [*events, TextDelta(text)] if text else events

    def _note_stages(self, block_id: str, block: dict[str, Any]) -> None:
        """Track open thinking stages: ``block.stage`` (doc 2.7.1) or ``block.multiStage`` (C.8)."""
        multi = block.get("multiStage")
        stages = multi.get("stages") if isinstance(multi, dict) else [block.get("stage")]
        for stage in stages if isinstance(stages, list) else []:
            if isinstance(stage, dict) and stage.get("name") == THINKING_STAGE:
                if stage.get("status") in _STAGE_OVER:
                    self._thinking_stages.discard(block_id)
                else:
                    self._thinking_stages.add(block_id)

    def _is_reasoning(self, block_id: str, block: dict[str, Any]) -> bool:
        """A text block is reasoning when flagged ``thinking`` (on the block or its text), when it is or
        hangs under an open thinking stage, or when an earlier frame of the same block said so (C.8)."""
        flags = [block.get("flags"), block["text"].get("flags")]
        if flags == [None, None] and not self._thinking_stages and not self._thinking_blocks:
            return False  # the common case, every text frame of a plain answer: nothing marks reasoning
        if any(f == "answer" or (isinstance(f, list) and "answer" in f) for f in flags):
            self._thinking_blocks.discard(block_id)
            return False
        flagged = any(f == "thinking" or (isinstance(f, list) and "thinking" in f) for f in flags)
        staged = block_id in self._thinking_stages or str(block.get("parentId") or "") in self._thinking_stages
        if flagged or staged:
            self._thinking_blocks.add(block_id)
        return block_id in self._thinking_blocks

    def _content(
        self, block_id: str, kind: Literal["text", "think"], content: object, *, op: str | None
    ) -> list[KimiEvent]:
        if not isinstance(content, str) or not content:
            return []
        key = (block_id, kind)
        before = self._blocks.get(key, "")
        if op == "append":
            delta = content
        elif content.startswith(before):
            delta = content[len(before) :]  # a `set` repeating the block so far: only the new part
        elif op is None:
            delta = content  # a frame without `op` that does not extend the block is a delta (C.8)
        else:
            log.debug("ignoring a Connect set that rewrites block %s", block_id)
            return []
        self._blocks[key] = before + delta
        if not delta:
            return []
        self.progress += 1
        if kind == "think":
            return [ThinkingDelta(delta)]
        if self._text_block not in (None, block_id) and not self._ends_with_newline:
            delta = "\n" + delta  # a new text block is a new segment, joined with a newline (C.8)
        self._text_block = block_id
        return self._answer_text(delta)

    def _answer_text(self, text: str) -> list[KimiEvent]:
        self._text_seen = True
        self._ends_with_newline = text.endswith("\n")
        rewritten = self._cites.rewrite_text(text)
        return [TextDelta(rewritten)] if rewritten else []


def _json(data: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError("Connect frame is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("Connect frame is not a JSON object")
    return payload


def _debug(error: dict[str, Any]) -> dict[str, Any]:
    """The first ``details[].debug`` object of a Connect error (doc 2.13.1), or {}."""
    for detail in error.get("details") or []:
        debug = detail.get("debug") if isinstance(detail, dict) else None
        if isinstance(debug, dict):
            return debug
    return {}


def _reason(error: dict[str, Any]) -> str:
    reason = _debug(error).get("reason") or error.get("reason")
    return reason if isinstance(reason, str) else ""


def _quota_refusal(error: dict[str, Any], message: str, **kwargs: Any) -> RateLimited:
    """A refusal for quota (C.13): the reset time as ``resetTime`` or ``retryAfterSeconds``, in
    ``details[].debug`` or on the error itself."""
    reset_at, retry_after = quota.when(_debug(error))
    if reset_at is None and retry_after is None:
        reset_at, retry_after = quota.when(error)
    return RateLimited(message, retry_after=retry_after, reset_at=reset_at, quota=True, **kwargs)


def _quota_reason(reason: str) -> bool:
    """A reason that names a quota (C.13: e.g. containing QUOTA or LIMIT), not the free-user overload."""
    return reason != OVERLOADED_FREE and any(word in reason for word in ("QUOTA", "LIMIT", "USAGE"))


def connect_error(
    error: dict[str, Any], *, continuing: bool = False, status: int | None = None, drift: Drift | None = None
) -> KimiError:
    """Map a Connect error object (unary body or end-stream ``error``, doc 2.13) to our error tree; a
    code or reason the mapping does not name is noted in ``drift``."""
    code = str(error.get("code") or "")
    reason = _reason(error)
    note_error(error, code=code, reason=reason, drift=drift)
    message = str(error.get("message") or reason or code or "upstream error")[:300]
    kwargs: dict[str, Any] = {"upstream_code": f"{code}:{reason}" if reason else code, "status": status}
    if code == "unauthenticated" or reason == "REASON_INVALID_AUTH_TOKEN":
        return AuthError(message, **kwargs)
    if reason == TOKEN_LENGTH_TOO_LONG:
        return ContextTooLong(message, **kwargs)
    if any(word in reason for word in _FILTER_WORDS):
        return ContentFiltered(message, **kwargs)
    if code == "resource_exhausted":
        if reason == OVERLOADED_FREE or "OVERLOAD" in reason:
            return Overloaded(message, **kwargs)
        return _quota_refusal(error, message, **kwargs)  # any other resource_exhausted is a quota (C.13)
    if code == "permission_denied":
        # A plan-restricted model or an exhausted paid quota: another account may be allowed, but the
        # refusal says nothing about how many turns this one has (not evidence of a limit, C.13).
        reset_at, retry_after = quota.when(_debug(error))
        return RateLimited(message, retry_after=retry_after, reset_at=reset_at, **kwargs)
    if code in ("failed_precondition", "aborted"):
        return StreamBusy(message, **kwargs)  # "already generating" (doc 2.17, code UNCERTAIN)
    if code == "not_found":
        return ChatNotFound(message, **kwargs) if continuing else BadRequest(message, **kwargs)
    if code in ("invalid_argument", "out_of_range", "already_exists", "unimplemented"):
        return BadRequest(message, **kwargs)
    return Unavailable(message, **kwargs)


def exception_error(exception: dict[str, Any], *, drift: Drift | None = None) -> KimiError:
    """A ``block.exception`` (doc 2.13.2): the partial answer is retracted, so the turn failed."""
    nested = exception.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else exception
    reason = str(error.get("reason") or "")
    note_error(exception, code="", reason=reason or "<none>", drift=drift)
    localized = error.get("localizedMessage")
    message = str(localized.get("message", "")) if isinstance(localized, dict) else ""
    message = (message or reason or "upstream retracted the answer")[:300]
    if reason == TOKEN_LENGTH_TOO_LONG:
        return ContextTooLong(message, upstream_code=reason)
    if any(word in reason for word in _FILTER_WORDS):
        return ContentFiltered(message, upstream_code=reason)
    if _quota_reason(reason):
        return _quota_refusal(error, message, upstream_code=reason)  # an in-stream quota notice (C.13)
    return Overloaded(message, upstream_code=reason)
