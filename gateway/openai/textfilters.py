"""Incremental rewriting of the answer text: citation markers and stop sequences.

Both filters take text in arbitrary pieces (``feed``) and give back what can be sent now, holding
back only a tail that might still become a match; ``flush`` (or ``final=True``) ends the stream. The
output is the same however the input is split (tested with hypothesis), in the manner of httpx's
incremental decoders.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

# Kimi's citation markers: ``[^1^]``, and ``[^1,2^]`` for several sources (protocol doc 1.11, 2.7.2).
# A marker longer than this is left alone, which bounds how much text is ever held back.
MAX_MARKER = 40
_MARKER_RE = re.compile(r"\[\^(\d{1,4}(?:\s*,\s*\d{1,4})*)\^\]")
_PARTIAL_MARKER_RE = re.compile(r"\[(?:\^(?:[0-9][0-9,\s]*\^?)?)?")  # every prefix of a marker fits this


@dataclasses.dataclass(frozen=True)
class Citation:
    """A rewritten marker: source ``number`` (1-based) at ``[start, end)`` of the rewritten text."""

    number: int
    start: int
    end: int


class CitationRewriter:
    """``[^1^]`` -> ``[1]``, ``[^1,2^]`` -> ``[1][2]``; reports where each reference lands."""

    def __init__(self) -> None:
        self._held = ""
        self._written = 0  # length of the rewritten text given out so far

    def feed(self, text: str, *, final: bool = False) -> tuple[str, list[Citation]]:
        buf, self._held = self._held + text, ""
        out: list[str] = []
        citations: list[Citation] = []
        copied = 0  # buf[:copied] is already in out
        position = self._written  # where the next piece of out lands in the rewritten text
        search_from = 0
        while (at := buf.find("[", search_from)) >= 0:
            match = _MARKER_RE.match(buf, at)
            if match and match.end() - at <= MAX_MARKER:
                out.append(buf[copied:at])
                position += at - copied
                for number in match[1].split(","):
                    ref = f"[{int(number)}]"
                    citations.append(Citation(int(number), position, position + len(ref)))
                    out.append(ref)
                    position += len(ref)
                copied = search_from = match.end()
            elif not final and len(buf) - at < MAX_MARKER and _PARTIAL_MARKER_RE.fullmatch(buf, at):
                self._held = buf[at:]
                buf = buf[:at]
                break
            else:
                search_from = at + 1
        out.append(buf[copied:])
        rewritten = "".join(out)
        self._written += len(rewritten)
        return rewritten, citations

    def flush(self) -> tuple[str, list[Citation]]:
        return self.feed("", final=True)


class StopFilter:
    """Cuts the text at the first occurrence of any stop sequence, also across pieces.

    Holds back at most ``len(longest stop) - 1`` characters. After a stop, ``stopped`` is True and
    everything else fed is dropped.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max(map(len, self._stops), default=0)
        self._held = ""
        self.stopped = False
        self.matched: str | None = None  # the stop sequence that stopped the text

    def feed(self, text: str, *, final: bool = False) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buf, self._held = self._held + text, ""
        found = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        first_stop = min(found, default=len(buf))
        pending = len(buf) if final else self._first_partial(buf)
        if pending < first_stop:  # an earlier stop may still complete: wait for more text
            self._held = buf[pending:]
            return buf[:pending]
        if found:
            self.stopped = True
            self.matched = next(s for s in self._stops if buf.find(s) == first_stop)
        return buf[:first_stop]

    def flush(self) -> str:
        return self.feed("", final=True)

    def _first_partial(self, buf: str) -> int:
        """Start of the longest tail of ``buf`` that is a proper prefix of a stop (``len(buf)`` if none)."""
        for start in range(max(0, len(buf) - self._longest + 1), len(buf)):
            tail = buf[start:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self._stops):
                return start
        return len(buf)
