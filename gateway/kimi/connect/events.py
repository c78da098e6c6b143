"""Connect stream frames -> normalised events (protocol doc 2.7, 2.8, 2.13). Pure: no I/O.

``ConnectTranslator.feed(frame)`` returns the events one frame produces, or raises a ``KimiError``
when the frame reports a failure; ``finish()`` is called at EOF and raises when the stream ended
without its end-of-stream frame. ``Done`` is only emitted from the ``0x02`` frame, never from the
``done`` data frame, because an error end-stream frame can follow ``done`` (doc 2.2.1).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson

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
from gateway.kimi.framing import ConnectFrame

log = logging.getLogger(__name__)

OVERLOADED_FREE = "REASON_SERVER_OVERLOADED_FOR_FREE_USER"
# The context is full (protocol doc C.2): a non-retryable error, never an overload.
TOKEN_LENGTH_TOO_LONG = "REASON_TOKEN_LENGTH_TOO_LONG"
_FILTER_WORDS = ("SENSITIVE", "FILTER", "CENSOR", "MODERAT", "VIOLAT", "COMPLIANCE")


class ConnectTranslator:
    """State of one Connect ``Chat`` stream. ``progress`` counts text/thinking/tool frames (the
    no-progress timeout watches it; heartbeats do not move it)."""

    def __init__(self, *, continuing: bool = False) -> None:
        self.continuing = continuing
        self.chat_id: str | None = None
        self.assistant_id: str | None = None
        self.progress = 0
        self.ended = False
        self._blocks: dict[tuple[str, str], str] = {}  # (block id, kind) -> content so far
        self._text_seen = False
        self._cites = CitationTracker()
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
        if not self.ended:
            raise ProtocolError("Connect stream ended without its end-of-stream frame")
        return []

    # -- frames -------------------------------------------------------------------------------

    def _end(self, payload: dict[str, Any]) -> list[KimiEvent]:
        error = payload.get("error")
        if isinstance(error, dict):
            raise connect_error(error, continuing=self.continuing)
        events: list[KimiEvent] = []
        tail = self._cites.flush_text()
        if tail:
            events.append(TextDelta(tail))
        if not self._text_seen:
            # Throttled replies can complete with no content at all (doc 2.13.2): retry elsewhere.
            raise Overloaded("upstream completed with an empty reply", upstream_code="empty_reply")
        events.append(Done(finish_reason="stop", message_id=self.assistant_id))
        return events

    def _event(self, payload: dict[str, Any]) -> list[KimiEvent]:
        if "heartbeat" in payload:
            return [Heartbeat()]
        if "done" in payload:
            return []
        if isinstance(payload.get("block"), dict):
            return self._block(payload["block"], op=str(payload.get("op", "set")))
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
        references = message.get("references")
        if isinstance(references, list):
            events += self._cites.add_references(references)
        return self._with_released_text(events) if refs or references else events

    def _block(self, block: dict[str, Any], *, op: str) -> list[KimiEvent]:
        block_id = str(block.get("id", ""))
        if isinstance(block.get("exception"), dict):
            raise exception_error(block["exception"])
        for kind in ("text", "think"):
            if isinstance(block.get(kind), dict):
                return self._content(block_id, kind, block[kind].get("content"), op=op)
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
        log.debug("ignoring Connect block kind %s", sorted(k for k in block if k not in ("id", "parentId")))
        return []

    def _with_released_text(self, events: list[KimiEvent]) -> list[KimiEvent]:
        """New results may resolve a marker whose text was held back: send that text now."""
        text = self._cites.release_text()
        return [*events, TextDelta(text)] if text else events

    def _content(self, block_id: str, kind: Literal["text", "think"], content: object, *, op: str) -> list[KimiEvent]:
        if not isinstance(content, str) or not content:
            return []
        key = (block_id, kind)
        before = self._blocks.get(key, "")
        if op == "append":
            delta = content
        elif content.startswith(before):
            delta = content[len(before) :]  # a `set` repeating the block so far: only the new part
        else:
            log.debug("ignoring a Connect set that rewrites block %s", block_id)
            return []
        self._blocks[key] = before + delta
        if not delta:
            return []
        self.progress += 1
        if kind == "think":
            return [ThinkingDelta(delta)]
        self._text_seen = True
        text = self._cites.rewrite_text(delta)
        return [TextDelta(text)] if text else []


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


def _retry_after(error: dict[str, Any]) -> float | None:
    value = _debug(error).get("retryAfterSeconds")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def connect_error(error: dict[str, Any], *, continuing: bool = False, status: int | None = None) -> KimiError:
    """Map a Connect error object (unary body or end-stream ``error``, doc 2.13) to our error tree."""
    code = str(error.get("code") or "")
    reason = _reason(error)
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
        return RateLimited(message, retry_after=_retry_after(error), **kwargs)  # quota limits (doc 2.13.3)
    if code == "permission_denied":
        # A plan-restricted model or an exhausted paid quota: another account may be allowed.
        return RateLimited(message, retry_after=_retry_after(error), **kwargs)
    if code in ("failed_precondition", "aborted"):
        return StreamBusy(message, **kwargs)  # "already generating" (doc 2.17, code UNCERTAIN)
    if code == "not_found":
        return ChatNotFound(message, **kwargs) if continuing else BadRequest(message, **kwargs)
    if code in ("invalid_argument", "out_of_range", "already_exists", "unimplemented"):
        return BadRequest(message, **kwargs)
    return Unavailable(message, **kwargs)


def exception_error(exception: dict[str, Any]) -> KimiError:
    """A ``block.exception`` (doc 2.13.2): the partial answer is retracted, so the turn failed."""
    nested = exception.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else exception
    reason = str(error.get("reason") or "")
    localized = error.get("localizedMessage")
    message = str(localized.get("message", "")) if isinstance(localized, dict) else ""
    message = (message or reason or "upstream retracted the answer")[:300]
    if reason == TOKEN_LENGTH_TOO_LONG:
        return ContextTooLong(message, upstream_code=reason)
    if any(word in reason for word in _FILTER_WORDS):
        return ContentFiltered(message, upstream_code=reason)
    return Overloaded(message, upstream_code=reason)
