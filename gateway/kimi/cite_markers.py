"""Citation markers in Kimi's answer text, recognised in text that arrives in pieces. Pure: no I/O.

The forms (kimi-web-protocol.md C.1, which supersedes 2.7.2; 2.7.2 for the older private-use token):

* inline citation: ``U+E3A0 "cite" U+1F6E0 body (U+1F6E0 | U+E3A8)``, the body like
  ``web_search:1#5:~:text=<quoted sentence>`` (search call, result index, text fragment);
* article header: ``U+E3A0 "article" U+1F6E0 ... U+1F3A8``;
* bare reference: ``U+1F6E0 "web_search:1#5" U+1F6E0``;
* the older token (2.7.2): ``PUA "cite" PUA body PUA``, e.g. ``\\ue200cite\\ue202turn0search2\\ue201``, and
  ``\\ue3a0cite\\ue3a3web_search:1#2\\ue3a3web_search:1#3\\ue3a8`` with several references.

So a ``cite`` opener is any private-use character, the keyword and a delimiter (private-use or U+1F6E0);
its body runs to the next delimiter and goes on while the text after that delimiter is another reference
(``name:call#index``), ending at U+E3A8 or at a delimiter not followed by one. U+1F6E0 (🛠) and U+1F3A8
(🎨) are ordinary emoji as well, so a lone one is text: a bare reference is waited for only while what
follows still reads as ``name:call#index``.

``scan(text, at, final=...)`` judges the candidate character at ``text[at]`` (see ``CANDIDATE``): a whole
``Marker``, ``TEXT`` (an ordinary character), ``MORE`` (a marker may still be arriving: hold ``text[at:]``
back) or ``Unclosed`` (no close within ``MAX_MARKER`` characters: drop the opening delimiters and treat the
rest as text). The verdict depends only on the characters, never on where the pieces were split, and a
marker, closing delimiter included, is at most ``MAX_MARKER`` characters, which bounds what is held back.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Final, Literal

MAX_MARKER = 400  # issue 14 / C.1: text is held back at most this long while a marker may be open
TOOL, PALETTE, END = "\U0001f6e0", "\U0001f3a8", "\ue3a8"
CANDIDATE = re.compile("[\ue000-\uf8ff\U0001f6e0]")  # where a marker may start
_DELIMITER = CANDIDATE  # the same characters separate and close a cite body
_REF = re.compile(r"[A-Za-z_]{1,32}:[0-9]{1,9}#[0-9]{1,9}")
_REF_PREFIX = re.compile(r"(?:[A-Za-z_]{1,32}(?::(?:[0-9]{1,9}(?:#[0-9]{0,9})?)?)?)?")  # every prefix of a ref
_FRAGMENT = ":~:"
_KEYWORDS = ("cite", "article")


class Verdict(enum.Enum):
    MORE = "more"
    TEXT = "text"


MORE: Final = Verdict.MORE
TEXT: Final = Verdict.TEXT


@dataclasses.dataclass(frozen=True)
class Marker:
    """A whole marker ``text[start:end]``: the references it names and the body (for older bodies)."""

    kind: Literal["cite", "article", "bare"]
    end: int
    token: str  # the marker as written (``message.references[].matchedText`` quotes it whole)
    refs: tuple[str, ...] = ()  # "web_search:1#5", in order
    body: str = ""  # the first body segment, e.g. "turn0search2"


@dataclasses.dataclass(frozen=True)
class Unclosed:
    """An opener never closed within ``MAX_MARKER``: its ``opener`` characters go, the rest is text."""

    opener: int


Scan = Marker | Unclosed | Literal[Verdict.MORE, Verdict.TEXT]


def scan(text: str, at: int, *, final: bool) -> Scan:
    if text[at] == TOOL:
        return _bare(text, at, final=final)
    word = _keyword(text, at, final=final)
    if not isinstance(word, str):
        return word
    opener = 2 + len(word)
    if word == "article":
        return _article(text, at, opener, final=final)
    return _cite(text, at, opener, final=final)


def _ref_at(text: str, at: int, *, final: bool) -> int | Literal[Verdict.MORE] | None:
    """End of a reference head ``name:call#index`` at ``text[at]``, None if there is none, MORE if unsure."""
    match = _REF.match(text, at)
    if match and match.end() < len(text):
        return None if text[match.end()] in "0123456789" else match.end()  # ten digits: not a reference
    if match and final:
        return match.end()
    if not final and _REF_PREFIX.fullmatch(text, at):
        return MORE
    return None


def _bare(text: str, at: int, *, final: bool) -> Scan:
    end = _ref_at(text, at + 1, final=final)
    if end is MORE:
        return MORE
    if end is None:
        return TEXT
    if end == len(text):
        return TEXT if final else MORE
    if text[end] != TOOL:
        return TEXT
    return Marker("bare", end + 1, text[at : end + 1], refs=(text[at + 1 : end],))


def _keyword(text: str, at: int, *, final: bool) -> str | Literal[Verdict.MORE, Verdict.TEXT]:
    """Which opener starts at ``text[at]`` (a private-use character): "cite", "article", TEXT or MORE."""
    for word in _KEYWORDS:
        piece = text[at + 1 : at + 2 + len(word)]
        if len(piece) > len(word):
            if piece.startswith(word) and _DELIMITER.fullmatch(piece[-1]):
                return word
        elif word.startswith(piece) and not final:
            return MORE
    return TEXT


def _article(text: str, at: int, opener: int, *, final: bool) -> Scan:
    limit = at + MAX_MARKER
    close = text.find(PALETTE, at + opener, limit)
    if close >= 0:
        # What a header holds besides its delimiters is not documented: nothing to map, so it goes (C.1).
        return Marker("article", close + 1, text[at : close + 1])
    return Unclosed(opener) if final or len(text) >= limit else MORE


def _cite(text: str, at: int, opener: int, *, final: bool) -> Scan:
    limit = at + MAX_MARKER
    seen_all = final or len(text) >= limit  # no later piece can change the window
    start, closed, refs, body = at + opener, 0, [], ""
    while True:
        delimiter = _DELIMITER.search(text, start, min(limit, len(text)))
        if delimiter is None:
            if closed:
                break  # a further reference that does not close in time is text
            return Unclosed(opener) if seen_all else MORE
        segment = text[start : delimiter.start()]
        head = _REF.match(segment)
        if head and segment[head.end() : head.end() + 1] in ("", ":"):  # the ref, then maybe its fragment
            refs.append(head.group())
        body = body if closed else segment
        closed = delimiter.end()
        if text[delimiter.start()] == END:
            break
        more = _continues(text, closed, final=seen_all)
        if more is MORE:
            return MORE
        if not more:
            break
        start = closed
    return Marker("cite", closed, text[at:closed], refs=tuple(refs), body=body)


def _continues(text: str, at: int, *, final: bool) -> bool | Literal[Verdict.MORE]:
    """Whether the cite body goes on at ``text[at]``: a reference followed by a delimiter or a fragment."""
    end = _ref_at(text, at, final=final)
    if end is None or end is MORE:
        return MORE if end is MORE else False
    if end == len(text):
        return MORE if not final else False
    if _DELIMITER.match(text, end) or text.startswith(_FRAGMENT, end):
        return True
    tail = text[end : end + len(_FRAGMENT)]
    return MORE if not final and len(tail) < len(_FRAGMENT) and _FRAGMENT.startswith(tail) else False
