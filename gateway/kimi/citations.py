"""Search results in reference order, and citation markers normalised to ``[^n^]``. Pure: no I/O.

The layer above rewrites ``[^n^]`` markers using ``results[n-1]`` (protocol doc 1.11, 2.7.2), so this
tracker numbers results in the order they first appear (deduplicated by URL) and rewrites the other
markers (cite_markers.py: the 2026 forms of kimi-web-protocol.md C.1 and the private-use token of 2.7.2)
into the same ``[^n^]`` form.

A reference ``web_search:<call>#<index>`` names one search call's result (C.1), so results are also keyed
by their ``refIndex`` (``"web_search:1#0"``, doc 2.7.1), or by the tool call id and their position when the
upstream sends no ``refIndex``; two calls that both have a result #0 stay apart. Older bodies
("turn0search2") and unkeyed results (legacy) fall back to the result's place in the whole list; a token
quoted by ``message.references[].matchedText`` resolves to that reference.

Text is held back only while a marker may be open or names results not known yet, and never more than
``MAX_MARKER`` characters (issue 14 / C.1); then what cannot be mapped is stripped, and an opener never
closed is released as text without its delimiters. Both are noted in the turn's ``Drift``
(gateway/kimi/drift.py, kind ``citation``): the marker's form, the references it named and its length,
never its text.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.kimi.base import SearchResult, SearchResults
from gateway.kimi.cite_markers import CANDIDATE, MAX_MARKER, MORE, TEXT, Marker, Unclosed, scan
from gateway.kimi.drift import Drift

_TRAILING_INT = re.compile(r"(\d+)\D*$")


class CitationTracker:
    def __init__(self, *, drift: Drift | None = None) -> None:
        self.drift = drift
        self.results: list[SearchResult] = []
        self._index: dict[str, int] = {}  # url -> 1-based reference number
        self._keys: dict[str, int] = {}  # "web_search:1#0" -> reference number (C.1)
        self._matched: dict[str, int] = {}  # whole cite token -> reference number
        self._pending = ""  # text held back behind an incomplete or unresolved marker

    # -- results ----------------------------------------------------------------------------------

    def add(self, found: list[SearchResult], keys: list[str | None] | None = None) -> list[SearchResults]:
        new = []
        for position, result in enumerate(found):
            if result.url not in self._index:
                self.results.append(result)
                self._index[result.url] = len(self.results)
                new.append(result)
            key = keys[position] if keys else None
            if key:
                self._keys.setdefault(key, self._index[result.url])
        return [SearchResults(tuple(new))] if new else []

    def add_tool_contents(self, contents: object, *, call_id: str | None = None) -> list[SearchResults]:
        """``block.tool.contents[].searchResult`` of the search call ``call_id`` (doc 2.7.1)."""
        items = [item.get("searchResult") for item in _dicts(contents)]
        return self._add_keyed([item for item in items if isinstance(item, dict)], call_id=call_id)

    def add_chunks(self, chunks: object) -> list[SearchResults]:
        return self._add_keyed(_dicts(chunks), call_id=None)

    def add_web_pages(self, pages: object) -> list[SearchResults]:
        return self.add([r for r in (_result({"base": p}) for p in _dicts(pages)) if r])

    def add_references(self, references: list[Any]) -> list[SearchResults]:
        """``message.references[]``: ``{matchedText, items: [{search: {base: {title, url}}}]}``."""
        events: list[SearchResults] = []
        for ref in _dicts(references):
            items = _dicts(ref.get("items"))
            search = items[0].get("search") if items else None
            found = _result(search) if isinstance(search, dict) else None
            if not found:
                continue
            events += self.add([found])
            if isinstance(ref.get("matchedText"), str):
                self._matched[ref["matchedText"]] = self._index[found.url]
        return events

    def _add_keyed(self, chunks: list[dict[str, Any]], *, call_id: str | None) -> list[SearchResults]:
        found, keys = [], []
        for position, chunk in enumerate(chunks):
            result = _result(chunk)
            if result:
                found.append(result)
                keys.append(_key(chunk, call_id, position))
        return self.add(found, keys)

    # -- text -------------------------------------------------------------------------------------

    def rewrite_text(self, delta: str) -> str:
        """Text that can be emitted now, with complete markers rewritten; the rest is held back."""
        if not self._pending and not CANDIDATE.search(delta):
            return delta
        self._pending += delta
        return self._take(final=False)

    def release_text(self) -> str:
        """Re-try held-back text after new results or references arrived."""
        return self._take(final=False) if self._pending else ""

    def flush_text(self) -> str:
        return self._take(final=True) if self._pending else ""

    def _take(self, *, final: bool) -> str:
        text, out, done = self._pending, [], 0  # text[:done] is decided
        while found := CANDIDATE.search(text, done):
            at = found.start()
            out.append(text[done:at])
            done = at
            verdict = scan(text, at, final=final)
            if verdict is MORE:
                break
            if verdict is TEXT:
                out.append(text[at])
                done = at + 1
                continue
            if isinstance(verdict, Unclosed):
                self._note_unclosed(text[at + 1 : at + verdict.opener - 1], len(text) - at)
                done = at + verdict.opener  # released as text, its delimiters stripped
                continue
            numbers, complete = self._numbers(verdict)
            if not complete and not final and len(text) - at < MAX_MARKER:
                break  # its results may still arrive
            if not complete:
                self._note_unmapped(verdict)
            out.append("".join(f"[^{n}^]" for n in numbers))  # what cannot be mapped is stripped
            done = verdict.end
        else:
            out.append(text[done:])
            done = len(text)
        self._pending = text[done:]
        return "".join(out)

    def _note_unmapped(self, marker: Marker) -> None:
        """A marker (some of) whose references name no known result: stripped (C.1), and noted."""
        if self.drift is not None:
            # The references are `name:call#index` (cite_markers._REF), never text; the body may be.
            sample: dict[str, object] = {"form": marker.kind, "refs": list(marker.refs), "chars": len(marker.token)}
            if not marker.refs:
                sample["body"] = f"<str:{len(marker.body)}>"
            self.drift.note("citation", f"{marker.kind}:unmapped", sample, redacted=True)

    def _note_unclosed(self, word: str, held: int) -> None:
        if self.drift is not None:
            self.drift.note("citation", f"{word}:unclosed", {"form": word, "held": held}, redacted=True)

    def _numbers(self, marker: Marker) -> tuple[list[int], bool]:
        """Reference numbers of a marker, and whether every reference in it is known yet."""
        if marker.token in self._matched:
            return [self._matched[marker.token]], True
        if marker.kind == "article":
            return [], True
        found: list[int | None] = [self._ref_number(ref) for ref in marker.refs]
        if not marker.refs:
            found = [self._position_number(marker.body)]
        numbers = list(dict.fromkeys(n for n in found if n is not None))
        return numbers, None not in found

    def _ref_number(self, ref: str) -> int | None:
        if ref in self._keys:
            return self._keys[ref]
        # Results without keys (legacy): the index counts through the one list there is.
        return None if self._keys else self._position_number(ref)

    def _position_number(self, body: str) -> int | None:
        found = _TRAILING_INT.search(body)
        if found:
            # A body like "turn0search2" names the result by its 0-based index in the search.
            number = int(found.group(1)) + 1
            return number if number <= len(self.results) else None
        return None


def _key(chunk: dict[str, Any], call_id: str | None, position: int) -> str | None:
    ref_index = chunk.get("refIndex")
    if isinstance(ref_index, str) and "#" in ref_index:
        return ref_index
    return f"{call_id}#{position}" if call_id else None


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _result(chunk: object) -> SearchResult | None:
    """``{base: {title, url, siteName, snippet}}`` (Connect), or the flat legacy shape."""
    if not isinstance(chunk, dict):
        return None
    nested = chunk.get("base")
    base: dict[Any, Any] = nested if isinstance(nested, dict) else chunk
    url = base.get("url")
    if not isinstance(url, str) or not url:
        return None
    return SearchResult(
        title=str(base.get("title") or url),
        url=url,
        snippet=str(base.get("snippet") or base.get("abstract") or ""),
        site=str(base.get("siteName") or base.get("site_name") or ""),
    )
