"""Scripted replies and injected faults (see README.md for the table of fault kinds)."""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_CHUNK_SIZE = 8

# Faults that change how a stream is written rather than what it says; they combine with one other fault.
# The second line: the stream shapes of kimi-web-protocol.md C.6 / C.8 that peers' parsers tolerate.
MODIFIERS = frozenset(
    {"comma_masks", "unknown_kinds", "degrade", "split_writes", "coalesce"}
    | {"stray_thinking", "think_flags", "opless", "blocks_only", "no_end_frame", "split_blocks"}
)

_STREAM = frozenset({"chat", "stream"})
DEFAULT_ON: dict[str, frozenset[str]] = {
    "refresh_invalid": frozenset({"refresh"}),
    "access_expired": frozenset({"chat", "create_chat", "stream"}),
    "auth_in_stream": _STREAM,
    "rate_limited": _STREAM,
    "overloaded": _STREAM,
    "block_exception": _STREAM,
    "content_filter": _STREAM,
    "context_too_long": _STREAM,  # the prompt refused as too long before any text (doc C.2)
    "stream_busy": _STREAM,
    "http_5xx": _STREAM,
    "http_429": _STREAM,
    "cut": _STREAM,
    "stall": _STREAM,
    "silence": _STREAM,
    "empty_reply": _STREAM,
    "done_then_error": _STREAM,
    "comma_masks": frozenset({"chat"}),
    "unknown_kinds": _STREAM,
    "degrade": frozenset({"chat"}),
    "split_writes": frozenset({"chat", "stream", "parse"}),
    "coalesce": frozenset({"chat", "stream", "parse"}),
    "parse_failed": frozenset({"upload"}),
    "file_pending": frozenset({"file"}),
    "stray_thinking": _STREAM,
    "think_flags": frozenset({"chat"}),
    "opless": frozenset({"chat"}),
    "blocks_only": frozenset({"chat"}),
    "no_end_frame": frozenset({"chat"}),
    "split_blocks": frozenset({"chat"}),
    "forbidden_html": frozenset({"refresh"}),
}
FAULT_KINDS = frozenset(DEFAULT_ON)


@dataclasses.dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str = ""
    site: str = ""

    @classmethod
    def coerce(cls, value: Any) -> SearchHit:
        if isinstance(value, SearchHit):
            return value
        if isinstance(value, dict):
            return cls(**{k: str(v) for k, v in value.items() if k in ("title", "url", "snippet", "site")})
        return cls(*[str(v) for v in value])


DEFAULT_SEARCH = (
    SearchHit("Fake result one", "https://example.org/one", "First snippet", "Example One"),
    SearchHit("Fake result two", "https://example.org/two", "Second snippet", "Example Two"),
)


# How citations are written into a searched answer (README.md "Citation styles").
CITATION_STYLES = ("caret", "cite", "inline", "bare", "article")


@dataclasses.dataclass
class Reply:
    text: str | None = None
    chunks: list[str] | None = None
    chunk_size: int | None = None
    thinking: str | None = None
    search: tuple[SearchHit, ...] | None = None
    citations: str | None = "caret"
    delay: float = 0.0
    length: bool = False
    account: str | None = None
    times: int | None = None
    searches: tuple[tuple[SearchHit, ...], ...] | None = None  # several search calls (wins over search)

    def search_calls(self) -> tuple[tuple[SearchHit, ...], ...]:
        """The scripted search calls, one tuple of hits each (empty: none scripted)."""
        if self.searches:
            return self.searches
        return (self.search,) if self.search else ()

    def deltas(self, default_text: str) -> list[str]:
        """The answer as the list of text deltas to stream (before citation markers)."""
        if self.chunks is not None:
            return [c for c in self.chunks]
        text = default_text if self.text is None else self.text
        size = self.chunk_size or DEFAULT_CHUNK_SIZE
        return [text[i : i + size] for i in range(0, len(text), size)]


@dataclasses.dataclass
class Fault:
    kind: str
    account: str | None = None
    times: int | None = 1
    after_events: int = 0
    retry_after: float | None = None
    status: int | None = None
    variant: str | None = None
    interval: float = 1.0
    duration: float = 5.0
    on: frozenset[str] = frozenset()
    code: str | None = None
    reason: str | None = None
    message: str | None = None
    reset_time: str | None = None  # RFC 3339: a quota refusal's reset time (C.13)


def make_fault(kind: str, **options: Any) -> Fault:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
    on = options.pop("on", None)
    fault = Fault(kind=kind, **options)
    fault.on = frozenset([on] if isinstance(on, str) else on) if on else DEFAULT_ON[kind]
    return fault


class Script:
    """Queues of replies and faults. Not thread-safe by itself: ``FakeKimi`` calls it under its lock."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.faults: list[Fault] = []

    def take_reply(self, account: str | None) -> Reply:
        finite = [r for r in self.replies if r.times is not None and r.account in (account, None)]
        finite.sort(key=lambda r: r.account is None)  # account-specific first, FIFO within each
        if finite:
            reply = finite[0]
            reply.times = (reply.times or 1) - 1
            if reply.times <= 0:
                self.replies.remove(reply)
            return reply
        for wanted in dict.fromkeys((account, None)):
            unlimited = [r for r in self.replies if r.times is None and r.account == wanted]
            if unlimited:
                return unlimited[-1]
        return Reply()

    def take_faults(self, kind: str, account: str | None) -> list[Fault]:
        """Faults firing on this call: every matching modifier plus the first other match."""
        matching = [f for f in self.faults if kind in f.on and f.account in (account, None)]
        matching.sort(key=lambda f: f.account is None)
        taken: list[Fault] = []
        main_taken = False
        for fault in matching:
            if fault.kind not in MODIFIERS:
                if main_taken:
                    continue
                main_taken = True
            taken.append(fault)
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        return taken


GENERIC = frozenset({"http_5xx", "http_429", "access_expired", "forbidden_html"})


def take_generic(script: Script, kind: str, account: str | None) -> Fault | None:
    """An HTTP-level fault aimed (with ``on=``) at a call kind whose handler does not look for faults itself."""
    for fault in sorted(script.faults, key=lambda f: f.account is None):
        if fault.kind in GENERIC and kind in fault.on and fault.account in (account, None):
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    script.faults.remove(fault)
            return fault
    return None


def main_fault(faults: list[Fault]) -> Fault | None:
    return next((f for f in faults if f.kind not in MODIFIERS), None)


def has_fault(faults: list[Fault], kind: str) -> Fault | None:
    return next((f for f in faults if f.kind == kind), None)
