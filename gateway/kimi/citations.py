"""Search results in reference order, and citation markers normalised to ``[^n^]``. Pure: no I/O.

The layer above rewrites ``[^n^]`` markers using ``results[n-1]`` (protocol doc 1.11, 2.7.2), so this
tracker numbers results in the order they first appear (deduplicated by URL) and rewrites the 2026
private-use ``cite`` tokens (doc 2.7.2, UNCERTAIN shape) into the same ``[^n^]`` form. A token is
resolved through ``message.references[].matchedText`` when the upstream sends that mapping, or by the
result index it names; text after an unresolved token is held back until it can be resolved, and
unresolvable tokens are dropped at the end (the doc's advice: strip what cannot be mapped).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.kimi.base import SearchResult, SearchResults

# A cite token: private-use char, "cite", private-use char, body, private-use char (doc 2.7.2).
_TOKEN = re.compile(r"[\ue000-\uf8ff]cite[\ue000-\uf8ff]([^\ue000-\uf8ff]{0,200})[\ue000-\uf8ff]")
_PUA = re.compile(r"[\ue000-\uf8ff]")
_TRAILING_INT = re.compile(r"(\d+)\D*$")
# How long a token may be before we stop waiting for its end (it was not a token then).
_MAX_TOKEN = 220


class CitationTracker:
    def __init__(self) -> None:
        self.results: list[SearchResult] = []
        self._index: dict[str, int] = {}  # url -> 1-based reference number
        self._matched: dict[str, int] = {}  # whole cite token -> reference number
        self._pending = ""  # text held back behind an incomplete or unresolved token

    # -- results ----------------------------------------------------------------------------------

    def add(self, found: list[SearchResult]) -> list[SearchResults]:
        new = []
        for result in found:
            if result.url and result.url not in self._index:
                self.results.append(result)
                self._index[result.url] = len(self.results)
                new.append(result)
        return [SearchResults(tuple(new))] if new else []

    def add_tool_contents(self, contents: object) -> list[SearchResults]:
        found = [_result(item.get("searchResult")) for item in _dicts(contents)]
        return self.add([r for r in found if r])

    def add_chunks(self, chunks: object) -> list[SearchResults]:
        return self.add([r for r in (_result(c) for c in _dicts(chunks)) if r])

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

    # -- text -------------------------------------------------------------------------------------

    def rewrite_text(self, delta: str) -> str:
        """Text that can be emitted now, with complete tokens rewritten; the rest is held back."""
        if not self._pending and not _PUA.search(delta):
            return delta
        self._pending += delta
        return self._take(final=False)

    def release_text(self) -> str:
        """Re-try held-back text after new references arrived."""
        return self._take(final=False) if self._pending else ""

    def flush_text(self) -> str:
        return self._take(final=True) if self._pending else ""

    def _take(self, *, final: bool) -> str:
        out, text = [], self._pending
        while True:
            match = _TOKEN.search(text)
            start = _PUA.search(text)
            if start is None:
                out.append(text)
                text = ""
                break
            if match is None or match.start() != start.start():
                if match is None and not final and len(text) - start.start() < _MAX_TOKEN:
                    out.append(text[: start.start()])  # maybe a token still arriving
                    text = text[start.start() :]
                    break
                out.append(text[: start.end()])  # a lone private-use char: not ours to touch
                text = text[start.end() :]
                continue
            number = self._number(match.group(0), match.group(1))
            if number is None and not final:
                out.append(text[: match.start()])
                text = text[match.start() :]
                break
            out.append(text[: match.start()] + (f"[^{number}^]" if number else ""))
            text = text[match.end() :]
        self._pending = text
        return "".join(out)

    def _number(self, token: str, body: str) -> int | None:
        if token in self._matched:
            return self._matched[token]
        found = _TRAILING_INT.search(body)
        if found:
            # A body like "turn0search2" names the result by its 0-based index in the search.
            number = int(found.group(1)) + 1
            return number if number <= len(self.results) else None
        return None


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
