"""Citation rewriting, stop sequences and token estimates: whatever the split, the same output."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.openai.textfilters import MAX_MARKER, Citation, CitationRewriter, StopFilter
from gateway.openai.usage import TokenTally, estimate_tokens


def rewrite_all(pieces: list[str]) -> tuple[str, list[Citation]]:
    rewriter = CitationRewriter()
    out, cites = [], []
    for piece in pieces:
        text, found = rewriter.feed(piece)
        out.append(text)
        cites += found
    text, found = rewriter.flush()
    return "".join(out) + text, cites + found


def stop_all(stops: list[str], pieces: list[str]) -> str:
    stop_filter = StopFilter(stops)
    return "".join(stop_filter.feed(p) for p in pieces) + stop_filter.flush()


def reference_rewrite(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if len(match[0]) > MAX_MARKER:
            return match[0]
        return "".join(f"[{int(n)}]" for n in match[1].split(","))

    return re.sub(r"\[\^(\d{1,4}(?:\s*,\s*\d{1,4})*)\^\]", replace, text)


def reference_stop(stops: list[str], text: str) -> str:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(found)] if found else text


@st.composite
def split(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


marker_text = st.text(alphabet="[^]1234, ab\n你", max_size=80)
marker_heavy = st.lists(
    st.sampled_from(["[^1^]", "[^12^]", "[^1,2^]", "[^3 , 4^]", "[^", "^]", "[", "]", "x", " ", "[^9"]), max_size=20
).map("".join)


# -- citations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sunny [^1^].", "sunny [1]."),
        ("a [^1,2^] b", "a [1][2] b"),
        ("a [^1, 2 ,3^] b", "a [1][2][3] b"),
        ("[^01^]", "[1]"),
        ("arr[1] and [^x^] and [^^]", "arr[1] and [^x^] and [^^]"),
        ("[^1^][^2^]", "[1][2]"),
        ("ends with [^1", "ends with [^1"),  # an unfinished marker is flushed as written
        ("[^12345^]", "[^12345^]"),  # too many digits for a source number
    ],
)
def test_it_rewrites_citation_markers(text: str, expected: str) -> None:
    assert rewrite_all([text])[0] == expected


def test_it_reports_where_each_reference_lands() -> None:
    text, cites = rewrite_all(["See [^", "2,1^] and [^3^]"])
    assert text == "See [2][1] and [3]"
    assert [(c.number, text[c.start : c.end]) for c in cites] == [(2, "[2]"), (1, "[1]"), (3, "[3]")]


def test_it_holds_back_only_a_possible_marker_prefix() -> None:
    rewriter = CitationRewriter()
    assert rewriter.feed("abc [^1")[0] == "abc "
    assert rewriter.feed("0^] def [x")[0] == "[10] def [x"


def test_it_gives_up_on_a_marker_longer_than_the_limit() -> None:
    rewriter = CitationRewriter()
    long_prefix = "[^" + "1," * 30
    assert rewriter.feed(long_prefix)[0] == long_prefix


@given(split(marker_text))
def test_it_rewrites_the_same_however_the_text_is_split(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    assert rewrite_all(pieces) == rewrite_all([text])
    assert rewrite_all(pieces)[0] == reference_rewrite(text)


@given(split(marker_heavy))
def test_it_rewrites_marker_heavy_text_the_same_for_every_split(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    rewritten, cites = rewrite_all(pieces)
    assert rewritten == reference_rewrite(text)
    assert all(rewritten[c.start : c.end] == f"[{c.number}]" for c in cites)


# -- stop sequences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        (["STOP"], ["hello ST", "OP world"], "hello "),
        (["\n\n"], ["line\n", "\nnext"], "line"),
        (["abcd", "c"], ["ab", "c", "d"], ""),  # the earliest start wins, even when it completes later
        (["abcd", "c"], ["ab", "cx"], "ab"),
        (["END"], ["no stop here, EN"], "no stop here, EN"),
        ([], ["anything"], "anything"),
    ],
)
def test_it_cuts_at_the_first_stop_sequence(stops: list[str], pieces: list[str], expected: str) -> None:
    assert stop_all(stops, pieces) == expected


def test_it_holds_back_less_than_the_longest_stop() -> None:
    stop_filter = StopFilter(["STOP"])
    assert stop_filter.feed("abcdefS") == "abcdef"
    assert stop_filter.feed("TX") == "STX"
    assert not stop_filter.stopped


def test_it_drops_everything_after_a_stop() -> None:
    stop_filter = StopFilter(["!"])
    assert stop_filter.feed("hi! there") == "hi"
    assert stop_filter.stopped
    assert stop_filter.feed("more") == ""


@given(
    st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4), min_size=1, max_size=4),
    split(st.text(alphabet="abcd\n", max_size=60)),
)
def test_it_stops_at_the_same_place_for_every_split(stops: list[str], case: tuple[str, list[str]]) -> None:
    text, pieces = case
    assert stop_all(stops, pieces) == reference_stop(stops, text)


# -- token estimates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("hello world", 3), ("你好", 2), ("你好 abc", 3), ("こんにちは", 5)],
)
def test_it_estimates_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@given(split(st.text(alphabet="ab 你。\n", max_size=50)), st.integers(0, 20))
def test_it_tallies_pieces_like_the_whole(case: tuple[str, list[str]], limit: int) -> None:
    text, pieces = case
    tally = TokenTally()
    for piece in pieces:
        tally.add(piece)
    assert tally.tokens == estimate_tokens(text)
    fits = TokenTally().fitting_prefix(text, limit)
    assert estimate_tokens(text[:fits]) <= limit
    assert fits == len(text) or estimate_tokens(text[: fits + 1]) > limit
