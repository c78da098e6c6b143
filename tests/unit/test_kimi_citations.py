"""Citation markers of 2026 (kimi-web-protocol.md C.1) and older: Connect frames -> ``[n]`` + ``url_citation``.

The marker scanner and the tracker sit in the Connect translator; these tests feed it frames and read what
a client gets from ``ReplyAssembler``, whatever the split of the answer text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.kimi.base import KimiEvent, SearchResult, TextDelta
from gateway.kimi.citations import CitationTracker
from gateway.kimi.cite_markers import MAX_MARKER
from gateway.kimi.connect.events import ConnectTranslator
from gateway.kimi.framing import ConnectFrame
from gateway.openai.chunks import ReplyAssembler

OPEN, TOOL, END, PALETTE = "\ue3a0", "\U0001f6e0", "\ue3a8", "\U0001f3a8"
DELIMITERS = set(OPEN + TOOL + END + PALETTE + "\ue200\ue201\ue202\ue3a3")
# Two search calls, each with a result #0 and #1 (refIndex as in doc 2.7.1).
CALLS = {
    "web_search:1": [("A one", "https://a.example/1"), ("A two", "https://a.example/2")],
    "web_search:2": [("B one", "https://b.example/1"), ("B two", "https://b.example/2")],
}
URL = {f"{call}#{i}": url for call, hits in CALLS.items() for i, (_, url) in enumerate(hits)}


def inline(ref: str, quote: str = "引文", close: str = TOOL) -> str:
    return f"{OPEN}cite{TOOL}{ref}:~:text={quote}{close}"


def bare(ref: str) -> str:
    return f"{TOOL}{ref}{TOOL}"


def article(title: str) -> str:
    return f"{OPEN}article{TOOL}{title}{PALETTE}"


def tool_frame(block_id: str, call: str, *, ref_index: bool = True) -> dict[str, Any]:
    results = []
    for i, (title, url) in enumerate(CALLS[call]):
        result: dict[str, Any] = {"id": str(i + 1), "base": {"title": title, "url": url}}
        if ref_index:
            result["refIndex"] = f"{call}#{i}"
        results.append({"searchResult": result})
    tool = {"toolCallId": call, "contents": results, "status": "STATUS_DONE"}
    return {"op": "set", "mask": "block.tool.contents,block.tool.status", "block": {"id": block_id, "tool": tool}}


def text_frame(content: str, op: str = "append") -> dict[str, Any]:
    return {"op": op, "mask": "block.text.content", "block": {"id": "9", "text": {"content": content}}}


CHAT = {"op": "set", "chat": {"id": "chat-1", "name": "Untitled Chat"}}
DONE = {"done": {}}


def frame(payload: dict[str, Any], flags: int = 0) -> ConnectFrame:
    return ConnectFrame(flags=flags, data=json.dumps(payload, ensure_ascii=False).encode())


def translate(frames: list[dict[str, Any]]) -> list[KimiEvent]:
    translator = ConnectTranslator()
    events = [event for f in frames for event in translator.feed(frame(f))]
    return events + translator.feed(frame({}, flags=0x02))


def answer(pieces: list[str], *, searches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The non-streaming message a client gets for these text pieces after both search calls."""
    if searches is None:
        searches = [tool_frame("1", "web_search:1"), tool_frame("2", "web_search:2")]
    frames = [CHAT, *searches, *(text_frame(p) for p in pieces), DONE]
    reply = ReplyAssembler(request_id="r1", model="kimi-search", created=0, silent=True)
    for event in translate(frames):
        reply.feed(event)
    message: dict[str, Any] = reply.completion()["choices"][0]["message"]  # type: ignore[index]
    return message


def cited(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(``[n]`` as it appears in the content, the URL its annotation points to)."""
    content = message["content"]
    spans = [a["url_citation"] for a in message["annotations"]]
    return [(content[s["start_index"] : s["end_index"]], s["url"]) for s in spans]


# -- each form ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "ref"),
    [
        (inline("web_search:2#1", close=TOOL), "web_search:2#1"),
        (inline("web_search:2#1", close=END), "web_search:2#1"),
        (bare("web_search:2#1"), "web_search:2#1"),
        ("\ue3a0cite\ue3a3web_search:2#1\ue3a8", "web_search:2#1"),  # the private-use token (doc 2.7.2)
        ("\ue200cite\ue202web_search:2#1\ue201", "web_search:2#1"),
    ],
)
def test_it_turns_each_marker_form_into_a_citation_of_its_result(marker: str, ref: str) -> None:
    message = answer(["天气晴朗" + marker, "。"])
    assert message["content"] == "天气晴朗[4]。"
    assert cited(message) == [("[4]", URL[ref])]


def test_it_strips_an_article_header_and_keeps_caret_markers() -> None:
    message = answer([article("巴黎天气") + "晴 [^1^]"])
    assert message["content"] == "晴 [1]"
    assert cited(message) == [("[1]", URL["web_search:1#0"])]


def test_it_maps_result_zero_of_two_search_calls_to_two_citations() -> None:
    message = answer([f"甲{inline('web_search:1#0')}乙{bare('web_search:2#0')}"])
    assert message["content"] == "甲[1]乙[3]"
    assert cited(message) == [("[1]", "https://a.example/1"), ("[3]", "https://b.example/1")]


def test_it_keys_results_by_tool_call_when_they_carry_no_ref_index() -> None:
    searches = [tool_frame("1", "web_search:1", ref_index=False), tool_frame("2", "web_search:2", ref_index=False)]
    message = answer([bare("web_search:2#0") + bare("web_search:1#0")], searches=searches)
    assert cited(message) == [("[3]", "https://b.example/1"), ("[1]", "https://a.example/1")]


def test_it_reads_several_references_in_one_cite() -> None:
    token = f"{OPEN}cite{TOOL}web_search:1#1:~:text=一{TOOL}web_search:2#0{END}"
    assert answer(["见" + token])["content"] == "见[2][3]"
    old = "\ue3a0cite\ue3a3web_search:2#1\ue3a3web_search:1#0\ue3a8"
    assert answer([old])["content"] == "[4][1]"


def test_it_leaves_the_emoji_alone_when_no_marker_follows() -> None:
    text = f"工具 {TOOL} 与调色板 {PALETTE}，{TOOL}web_search 很好，{TOOL}web_search:1#0 没闭合"
    assert answer([text[:9], text[9:20], text[20:]])["content"] == text


def test_it_strips_a_reference_it_cannot_map() -> None:
    message = answer([f"未知{inline('web_search:7#0')}来源{bare('web_search:1#9')}。"])
    assert message["content"] == "未知来源。"
    assert message["annotations"] == []


def test_it_resolves_a_marker_whose_results_arrive_after_it() -> None:
    chunk = {"refIndex": "web_search:5#0", "base": {"title": "Late", "url": "https://late.example"}}
    used = {"message": {"id": "a1", "refs": {"usedSearchChunks": [chunk]}}}
    events = translate([CHAT, text_frame("稍后" + bare("web_search:5#0") + "到达"), used, DONE])
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["稍后", "[^1^]到达"]


# -- holding back -------------------------------------------------------------------------------------


def feed_each_char(text: str) -> tuple[list[str], int]:
    """What the tracker gives out for ``text`` fed one character at a time, and the most it held back."""
    tracker, out, held = CitationTracker(), [], 0
    for n, char in enumerate(text, start=1):
        out.append(tracker.rewrite_text(char))
        held = max(held, n - len("".join(out)))
    out.append(tracker.flush_text())
    return out, held


def test_it_releases_a_marker_never_closed_after_400_characters_without_its_delimiters() -> None:
    body = "引" * (MAX_MARKER + 50)
    out, held = feed_each_char("前" + OPEN + "cite" + TOOL + body)
    assert "".join(out) == "前" + body
    assert held == MAX_MARKER - 1  # the opener and the body up to the bound, no further
    assert "".join(out[:MAX_MARKER]) == "前"  # nothing of the marker before the bound
    assert "".join(out[: MAX_MARKER + 1]) == "前" + body[:394]  # released at the bound, not at the end


def test_it_releases_an_unclosed_article_header_and_a_marker_cut_by_the_end() -> None:
    body = "题" * MAX_MARKER
    assert "".join(feed_each_char(OPEN + "article" + TOOL + body + PALETTE)[0]) == body + PALETTE
    assert "".join(feed_each_char("尾" + OPEN + "cite" + TOOL + "web_search:1")[0]) == "尾web_search:1"


def test_it_closes_a_marker_at_exactly_400_characters() -> None:
    tracker = CitationTracker()
    tracker.add([SearchResult("A", "https://a.example/1")], ["web_search:1#0"])
    opener_and_ref = OPEN + "cite" + TOOL + "web_search:1#0:~:text="
    token = opener_and_ref + "x" * (MAX_MARKER - len(opener_and_ref) - 1) + TOOL
    assert len(token) == MAX_MARKER
    assert tracker.rewrite_text(token + "!") + tracker.flush_text() == "[^1^]!"
    too_long = opener_and_ref + "x" * (MAX_MARKER - len(opener_and_ref)) + TOOL
    assert tracker.rewrite_text(too_long) + tracker.flush_text() == too_long.removeprefix(OPEN + "cite" + TOOL)


def test_it_holds_back_an_unmapped_marker_at_most_400_characters() -> None:
    out, held = feed_each_char("a" + bare("web_search:3#0") + "b" * 1000)
    assert "".join(out) == "a" + "b" * 1000
    assert held <= MAX_MARKER


def test_it_passes_plain_text_through_at_once() -> None:
    tracker = CitationTracker()
    assert [tracker.rewrite_text(p) for p in ["纯文本，", "没有标记。", " [^1^]"]] == [
        "纯文本，",
        "没有标记。",
        " [^1^]",
    ]


# -- any split, the same answer -----------------------------------------------------------------------

# (raw piece, what the client sees) -- no piece starts with an ASCII reference, so that none of them
# continues the references of the cite before it.
FRAGMENTS = [
    ("今天巴黎天气晴朗，", "今天巴黎天气晴朗，"),
    ("气温二十一度。", "气温二十一度。"),
    (" [^2^]", " [2]"),
    (inline("web_search:2#0", "阳光明媚"), "[3]"),
    (inline("web_search:1#1", "多云", close=END), "[2]"),
    (bare("web_search:1#0"), "[1]"),
    (bare("web_search:2#1"), "[4]"),
    (article("巴黎天气"), ""),
    ("\ue3a0cite\ue3a3web_search:2#1\ue3a3web_search:1#0\ue3a8", "[4][1]"),
    ("\ue200cite\ue202turn0search1\ue201", "[2]"),  # an older body: the place in the whole list
    (inline("web_search:9#0", "不存在"), ""),  # no such call: stripped
    (f"{TOOL} 工具", f"{TOOL} 工具"),
    (PALETTE, PALETTE),
]


@st.composite
def split_payload(draw: st.DrawFn) -> tuple[list[int], list[str]]:
    chosen = draw(st.lists(st.integers(0, len(FRAGMENTS) - 1), min_size=1, max_size=14))
    text = "".join(FRAGMENTS[i][0] for i in chosen)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return chosen, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@settings(max_examples=300, deadline=None)
@given(split_payload())
def test_any_split_of_a_mixed_payload_gives_the_same_answer(case: tuple[list[int], list[str]]) -> None:
    chosen, pieces = case
    whole = answer(["".join(pieces)])
    assert answer(pieces) == whole
    expected = "".join(FRAGMENTS[i][1] for i in chosen)
    assert whole["content"] == expected
    assert not DELIMITERS & set(whole["content"].replace(f"{TOOL} 工具", "").replace(PALETTE, ""))
    numbers = {"[1]": URL["web_search:1#0"], "[2]": URL["web_search:1#1"]}
    numbers |= {"[3]": URL["web_search:2#0"], "[4]": URL["web_search:2#1"]}
    assert all(numbers[ref] == url for ref, url in cited(whole))
    assert len(cited(whole)) == expected.count("[")


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(1, MAX_MARKER + 60), max_size=12))
def test_any_split_of_an_unclosed_marker_gives_the_same_text(cuts: set[int]) -> None:
    text = "前" + OPEN + "cite" + TOOL + "web_search:1#0:~:text=" + "长" * MAX_MARKER
    bounds = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    assert answer(pieces)["content"] == "前web_search:1#0:~:text=" + "长" * MAX_MARKER


# Any text at all, marker-like or not: the tracker's output does not depend on the split.
ATOMS = [OPEN, TOOL, END, PALETTE, "\ue3a3", "cite", "article", "web_search:1#0", "web_search:2#", "1", ":~:text="]
ATOMS += ["文", " ", "[^1^]", "长" * 130]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ATOMS), max_size=30).map("".join), st.data())
def test_the_tracker_gives_the_same_text_for_any_split_of_any_text(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=20)))
    bounds = [0, *cuts, len(text)]

    def rewrite(pieces: list[str]) -> str:
        tracker = CitationTracker()
        tracker.add([SearchResult("A", "https://a.example/1")], ["web_search:1#0"])
        return "".join(tracker.rewrite_text(p) for p in pieces) + tracker.flush_text()

    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    assert rewrite(pieces) == rewrite([text])
