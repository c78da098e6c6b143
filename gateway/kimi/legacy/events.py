"""Legacy SSE events -> normalised events (protocol doc 1.5, 1.9-1.12). Pure: no I/O.

``LegacyTranslator.feed(event)`` returns the events one SSE event produces, or raises a ``KimiError``
for an in-stream ``error``; ``finish()`` at EOF raises ``ProtocolError`` when ``all_done`` never came.
Events, keys and error types the catalogue does not name are ignored (doc 1.10) and noted in the turn's
``Drift`` (shapes.py, gateway/kimi/drift.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import orjson

from gateway.kimi import quota
from gateway.kimi.base import (
    AuthError,
    BadRequest,
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
    SearchResults,
    StreamBusy,
    TextDelta,
    ThinkingDelta,
    Unavailable,
)
from gateway.kimi.citations import CitationTracker
from gateway.kimi.drift import Drift
from gateway.kimi.framing import ServerSentEvent
from gateway.kimi.legacy.shapes import note_error, note_event

log = logging.getLogger(__name__)

# error_type -> error class (doc 1.5); anything else is decided by status and context.
_ERROR_TYPES: dict[str, type[KimiError]] = {
    "auth.token.invalid": AuthError,
    "chat.user_stream_pushing": StreamBusy,
    "chat.forbidden": ContentFiltered,  # chat disabled after a moderation hit
    "validation.error": BadRequest,
    "openai.completion.token_length_too_long": ContextTooLong,  # doc 1.5, C.2
    "openai.completion.stream": Overloaded,  # "Kimi is a bit tired now" (doc 1.5)
}
_QUOTA_WORDS = ("quota", "limit", "usage", "exceed", "too_many", "frequen")
_FILTER_WORDS = ("sensitive", "filter", "censor", "moderat", "violat", "compliance")


class LegacyTranslator:
    """State of one legacy completion stream. ``progress`` counts text/thinking/search events;
    ``drift`` collects what it did not understand (its own when none is given)."""

    def __init__(self, *, continuing: bool = False, drift: Drift | None = None) -> None:
        self.continuing = continuing
        self.drift = drift if drift is not None else Drift()
        self.progress = 0
        self.ended = False
        self.segment_id: str | None = None  # the `req` id (doc 1.10)
        self.reply_id: str | None = None  # the `resp` id
        self._finish: Literal["stop", "length"] = "stop"
        self._text_seen = False
        self._cites = CitationTracker(drift=self.drift)

    def feed(self, sse: ServerSentEvent) -> list[KimiEvent]:
        if self.ended:
            return []
        if sse.data.strip() == "[DONE]":  # accepted by some clients, never captured (doc 1.9)
            return self._all_done()
        payload = _json(sse.data)
        kind = payload.get("event") or sse.event
        note_event(str(kind or ""), payload, self.drift)
        handler = _HANDLERS.get(str(kind))
        if handler is None:
            log.debug("ignoring legacy event %r", kind)
            return []
        return handler(self, payload)

    def finish(self) -> list[KimiEvent]:
        if not self.ended:
            raise ProtocolError("legacy stream ended without all_done")
        return []

    # -- events -----------------------------------------------------------------------------------

    def _cmpl(self, payload: dict[str, Any]) -> list[KimiEvent]:
        text = payload.get("text")
        if not isinstance(text, str) or not text:
            return []
        self.progress += 1
        self._text_seen = True
        text = self._cites.rewrite_text(text)
        return [TextDelta(text)] if text else []

    def _k1(self, payload: dict[str, Any]) -> list[KimiEvent]:
        self.progress += 1
        events: list[KimiEvent] = self._with_released_text(self._cites.add_chunks(payload.get("search_results")))
        text = payload.get("text")
        if isinstance(text, str) and text:
            events.append(ThinkingDelta(text))
        return events

    def _search_plus(self, payload: dict[str, Any]) -> list[KimiEvent]:
        self.progress += 1
        msg = payload.get("msg")
        if isinstance(msg, dict) and msg.get("type") == "get_res":
            return self._with_released_text(self._cites.add_chunks([msg]))
        return []

    def _ref_docs(self, payload: dict[str, Any]) -> list[KimiEvent]:
        cards = [c for c in payload.get("ref_cards") or [] if isinstance(c, dict)]
        cards.sort(key=_card_index)
        return self._with_released_text(self._cites.add_chunks(cards))

    def _with_released_text(self, found: list[SearchResults]) -> list[KimiEvent]:
        """New results may resolve a citation whose text was held back: send that text now."""
        events: list[KimiEvent] = list(found)
        text = self._cites.release_text() if found else ""
        return [*events, TextDelta(text)] if text else events

    def _ids(self, payload: dict[str, Any]) -> list[KimiEvent]:
        attr = "segment_id" if payload.get("event") == "req" else "reply_id"
        if isinstance(payload.get("id"), str):
            setattr(self, attr, payload["id"])
        return []

    def _length(self, payload: dict[str, Any]) -> list[KimiEvent]:
        self._finish = "length"
        return []

    def _ping(self, payload: dict[str, Any]) -> list[KimiEvent]:
        return [Heartbeat()]

    def _error(self, payload: dict[str, Any]) -> list[KimiEvent]:
        nested = payload.get("error")
        body: dict[str, Any] = nested if isinstance(nested, dict) else payload
        raise legacy_error(
            body, continuing=self.continuing, in_stream=True, after_text=self._text_seen, drift=self.drift
        )

    def _all_done(self, payload: dict[str, Any] | None = None) -> list[KimiEvent]:
        self.ended = True
        events: list[KimiEvent] = []
        tail = self._cites.flush_text()
        if tail:
            events.append(TextDelta(tail))
        if not self._text_seen:
            raise Overloaded("upstream completed with an empty reply", upstream_code="empty_reply")
        events.append(Done(finish_reason=self._finish, message_id=self.reply_id))
        return events


_HANDLERS: dict[str, Callable[[LegacyTranslator, dict[str, Any]], list[KimiEvent]]] = {
    "cmpl": LegacyTranslator._cmpl,
    "k1": LegacyTranslator._k1,
    "search_plus": LegacyTranslator._search_plus,
    "ref_docs": LegacyTranslator._ref_docs,
    "req": LegacyTranslator._ids,
    "resp": LegacyTranslator._ids,
    "length": LegacyTranslator._length,
    "ping": LegacyTranslator._ping,
    "error": LegacyTranslator._error,
    "all_done": LegacyTranslator._all_done,
}


def _card_index(card: dict[str, Any]) -> int:
    """Sort key for ``ref_cards``: their ``idx``, cards without one last."""
    idx = card.get("idx")
    return idx if isinstance(idx, int) else 1 << 30


def _json(data: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError("legacy SSE data is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ProtocolError("legacy SSE data is not a JSON object")
    return payload


def legacy_error(
    body: dict[str, Any],
    *,
    status: int | None = None,
    continuing: bool = False,
    in_stream: bool = False,
    after_text: bool = False,
    drift: Drift | None = None,
) -> KimiError:
    """Map a legacy ``{"error_type", "message", "detail"}`` body (doc 1.5, 1.10.1) to our tree; an
    error type the mapping does not name is noted in ``drift``."""
    error_type = str(body.get("error_type") or "")
    note_error(body, error_type=error_type, in_stream=in_stream, drift=drift)
    message = str(body.get("message") or error_type or f"HTTP {status}")[:300]
    kwargs: dict[str, Any] = {"upstream_code": error_type, "status": status}
    lowered = error_type.lower()
    if error_type == "chat.not_found":
        return ChatNotFound(message, **kwargs) if continuing else BadRequest(message, **kwargs)
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type](message, **kwargs)
    if status == 401:
        return AuthError(message, **kwargs)
    if any(word in lowered for word in _FILTER_WORDS):
        return ContentFiltered(message, **kwargs)
    if any(word in lowered for word in _QUOTA_WORDS):
        # A quota refusal (C.13): T as ``detail.resetTime`` or ``detail.retry_after`` when it came.
        detail = body.get("detail")
        reset_at, retry_after = quota.when(detail) if isinstance(detail, dict) else (None, None)
        return RateLimited(message, retry_after=retry_after, reset_at=reset_at, quota=True, **kwargs)
    if in_stream and after_text:
        return ContentFiltered(message, **kwargs)  # most mid-stream stops are moderation (doc 1.10.1)
    if status is not None and 400 <= status < 500 and status != 429:
        return BadRequest(message, **kwargs)
    return Unavailable(message, **kwargs)
