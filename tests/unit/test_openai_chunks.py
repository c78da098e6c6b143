"""ReplyAssembler: upstream events -> chat.completion chunks and the final body."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.kimi.base import (
    ChatCreated,
    Done,
    Heartbeat,
    KimiEvent,
    SearchResult,
    SearchResults,
    TextDelta,
    ThinkingDelta,
)
from gateway.openai.chunks import CONTENT_FILTER_NOTICE, ReplyAssembler, error_chunk
from gateway.openai.errors import UpstreamUnavailable
from gateway.openai.usage import estimate_tokens

PARIS = SearchResult(title="Paris forecast", url="https://weather.example/paris")
LYON = SearchResult(title="Lyon\nnews", url="https://lyon.example/")


def assembler(**kwargs: Any) -> ReplyAssembler:
    defaults: dict[str, Any] = {"request_id": "r1", "model": "kimi-search", "created": 1700000000}
    return ReplyAssembler(**(defaults | kwargs))


def run(events: list[KimiEvent], **kwargs: Any) -> tuple[ReplyAssembler, list[dict[str, Any]]]:
    reply = assembler(**kwargs)
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks += reply.feed(event)
        if reply.finished:
            break
    return reply, chunks


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def streamed(chunks: list[dict[str, Any]], field: str = "content") -> str:
    return "".join(d.get(field, "") for d in deltas(chunks))


def streamed_annotations(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for d in deltas(chunks) for a in d.get("annotations", [])]


def message(reply: ReplyAssembler) -> dict[str, Any]:
    return reply.completion()["choices"][0]["message"]  # type: ignore[index,no-any-return]


# -- shape --------------------------------------------------------------------------------------------


def test_it_streams_role_text_and_finish_like_openai() -> None:
    reply, chunks = run([ChatCreated("chat-1"), Heartbeat(), TextDelta("Hel"), TextDelta("lo"), Done(message_id="m9")])
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 3
    assert {c["id"] for c in chunks} == {"chatcmpl-r1"}
    assert {c["model"] for c in chunks} == {"kimi-search"}
    assert deltas(chunks) == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert "usage" not in chunks[0]
    assert (reply.chat_id, reply.message_id, reply.finished) == ("chat-1", "m9", True)


def test_it_builds_the_non_streaming_body() -> None:
    reply, _ = run([ThinkingDelta("Let me think."), TextDelta("Four."), Done()], prompt_text="What is 2+2?")
    body = reply.completion()
    assert body["object"] == "chat.completion"
    assert body["id"] == "chatcmpl-r1"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Four.",
                "refusal": None,
                "reasoning_content": "Let me think.",
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 5,  # 18 characters sent, reasoning included
        "total_tokens": 8,
        "completion_tokens_details": {"reasoning_tokens": 4},
    }


def test_it_uses_the_callers_id_when_given() -> None:
    reply, chunks = run([TextDelta("x"), Done()], completion_id="conv-42")
    assert chunks[0]["id"] == "conv-42"
    assert reply.completion()["id"] == "conv-42"


def test_it_ends_an_empty_answer_with_a_role_chunk() -> None:
    reply, chunks = run([Done()])
    assert deltas(chunks) == [{"role": "assistant", "content": ""}]
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert not reply.first_content_emitted


def test_it_adds_a_usage_chunk_when_asked() -> None:
    reply, chunks = run([TextDelta("hello world"), Done()], include_usage=True, prompt_text="abcdefgh")
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 2
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert (reply.prompt_tokens, reply.completion_tokens, reply.text_chars) == (2, 3, 11)


def test_it_reports_first_content_only_once_something_is_sent() -> None:
    reply = assembler(reasoning_format="hidden")
    assert reply.feed(ChatCreated("c")) == []
    assert reply.feed(ThinkingDelta("secret")) == []
    assert not reply.first_content_emitted
    reply.feed(TextDelta("a"))
    assert reply.first_content_emitted


def test_it_ignores_events_after_the_end_but_keeps_the_message_id() -> None:
    reply, _ = run([TextDelta("a STOP b")], stop=["STOP"])
    assert reply.finished
    assert reply.feed(TextDelta("more")) == []
    assert reply.feed(Done(message_id="m2")) == []
    assert reply.message_id == "m2"
    assert message(reply)["content"] == "a "


def test_it_formats_a_mid_stream_error() -> None:
    error = UpstreamUnavailable("Kimi is unavailable right now.", status=502)
    assert error_chunk(error) == {
        "error": {
            "message": "Kimi is unavailable right now.",
            "type": "api_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }


# -- reasoning ---------------------------------------------------------------------------------------


def test_it_wraps_reasoning_in_think_tags() -> None:
    reply, chunks = run(
        [ThinkingDelta("a"), ThinkingDelta("b"), TextDelta("answer"), Done()], reasoning_format="think_tags"
    )
    assert message(reply)["content"] == "<think>\nab\n</think>\n\nanswer"
    assert streamed(chunks) == message(reply)["content"]
    assert "reasoning_content" not in message(reply)


def test_it_closes_the_think_tag_when_no_answer_follows() -> None:
    reply, _ = run([ThinkingDelta("hmm"), Done()], reasoning_format="think_tags")
    assert message(reply)["content"] == "<think>\nhmm\n</think>\n\n"


def test_it_drops_reasoning_that_arrives_after_the_answer_in_think_tags() -> None:
    events: list[KimiEvent] = [ThinkingDelta("a"), TextDelta("x"), ThinkingDelta("late"), TextDelta("y"), Done()]
    reply, _ = run(events, reasoning_format="think_tags")
    assert message(reply)["content"] == "<think>\na\n</think>\n\nxy"


def test_it_hides_reasoning_and_does_not_count_it() -> None:
    reply, chunks = run(
        [ThinkingDelta("secret " * 50), TextDelta("ok"), Done()], reasoning_format="hidden", max_tokens=5
    )
    assert "secret" not in str(chunks)
    assert message(reply) == {"role": "assistant", "content": "ok", "refusal": None, "annotations": []}
    assert reply.completion_tokens == 1


# -- search results and citations --------------------------------------------------------------------


def search_events(*texts: str) -> list[KimiEvent]:
    return [SearchResults((PARIS,)), *(TextDelta(t) for t in texts), SearchResults((LYON,)), Done()]


def test_it_rewrites_citations_and_lists_the_cited_sources() -> None:
    reply, chunks = run(search_events("Sunny [^", "1^]."))
    content = message(reply)["content"]
    assert content == "Sunny [1].\n\nSources:\n[1] Paris forecast - https://weather.example/paris"
    first = message(reply)["annotations"][0]["url_citation"]
    assert content[first["start_index"] : first["end_index"]] == "[1]"
    assert first["url"] == PARIS.url
    line = message(reply)["annotations"][1]["url_citation"]
    assert content[line["start_index"] : line["end_index"]] == "[1] Paris forecast - https://weather.example/paris"
    assert streamed_annotations(chunks) == message(reply)["annotations"]


def test_it_lists_every_result_when_none_was_cited() -> None:
    reply, _ = run(search_events("No markers."))
    assert message(reply)["content"].endswith(
        "Sources:\n[1] Paris forecast - https://weather.example/paris\n[2] Lyon news - https://lyon.example/"
    )


def test_it_annotates_a_reference_when_its_result_arrives_later() -> None:
    events: list[KimiEvent] = [TextDelta("See [^1^]"), SearchResults((PARIS,)), Done()]
    reply, chunks = run(events, silent=True)
    assert message(reply)["content"] == "See [1]"
    assert deltas(chunks)[1] == {"annotations": message(reply)["annotations"]}
    assert message(reply)["annotations"][0]["url_citation"]["start_index"] == 4


def test_it_annotates_no_reference_without_a_matching_result() -> None:
    reply, _ = run([SearchResults((PARIS,)), TextDelta("a [^0^] b [^2^]"), Done()])
    assert message(reply)["content"].startswith("a [0] b [2]\n\nSources:\n[1] Paris forecast")
    assert len(message(reply)["annotations"]) == 1  # the source list line only


def test_it_prints_no_source_list_when_silent() -> None:
    reply, _ = run(search_events("Sunny [^1^]."), silent=True)
    assert message(reply)["content"] == "Sunny [1]."
    assert len(message(reply)["annotations"]) == 1


def test_it_offsets_citations_past_the_think_block() -> None:
    events: list[KimiEvent] = [SearchResults((PARIS,)), ThinkingDelta("t"), TextDelta("A [^1^]"), Done()]
    reply, _ = run(events, reasoning_format="think_tags", silent=True)
    content = message(reply)["content"]
    span = message(reply)["annotations"][0]["url_citation"]
    assert content[span["start_index"] : span["end_index"]] == "[1]"


# -- stop, max_tokens, content filter ----------------------------------------------------------------


def test_it_cuts_at_a_stop_sequence_spanning_deltas() -> None:
    reply, chunks = run(search_events("one EN", "D two"), stop=["END"])
    assert message(reply)["content"] == "one "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert reply.finished


def test_it_stops_at_max_tokens() -> None:
    reply, chunks = run([TextDelta("abcdefgh"), TextDelta("ijklmnop"), Done()], max_tokens=3)
    assert message(reply)["content"] == "abcdefghijkl"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert reply.finished


def test_it_counts_reasoning_against_max_tokens() -> None:
    reply, _ = run([ThinkingDelta("abcdefgh"), TextDelta("answer"), Done()], max_tokens=2)
    assert message(reply)["reasoning_content"] == "abcdefgh"
    assert message(reply)["content"] == ""
    assert reply.finish_reason == "length"


def test_it_passes_on_an_upstream_length_finish() -> None:
    reply, _ = run([TextDelta("partial [^"), Done(finish_reason="length")])
    assert (message(reply)["content"], reply.finish_reason) == ("partial [^", "length")


def test_it_leaves_out_a_source_list_that_would_hold_a_stop_sequence() -> None:
    reply, _ = run(search_events("Sunny [^1^]."), stop=["Sources"])
    assert (message(reply)["content"], reply.finish_reason) == ("Sunny [1].", "stop")
    assert len(message(reply)["annotations"]) == 1


def test_it_leaves_out_a_source_list_that_would_pass_max_tokens() -> None:
    reply, _ = run(search_events("Sunny [^1^]."), max_tokens=10)
    assert (message(reply)["content"], reply.finish_reason) == ("Sunny [1].", "stop")


def test_it_appends_a_notice_when_the_content_filter_stops_the_answer() -> None:
    reply, chunks = run([TextDelta("Some text"), Done(finish_reason="content_filter")])
    assert message(reply)["content"] == f"Some text\n\n{CONTENT_FILTER_NOTICE}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    reply, _ = run([Done(finish_reason="content_filter")])
    assert message(reply)["content"] == CONTENT_FILTER_NOTICE


def test_it_finishes_on_completion_without_done() -> None:
    reply = assembler()
    reply.feed(TextDelta("held [^1"))
    assert message(reply)["content"] == "held [^1"
    assert reply.finish_reason == "stop"


# -- the same answer, split at random points ---------------------------------------------------------

answer_text = st.lists(
    st.sampled_from(["Sunny", " ", "[^1^]", "[^2^]", "[^1,2^]", "[^", "^]", "STOP", "ST", "OP", "你好", "\n", "x"]),
    max_size=25,
).map("".join)


@st.composite
def pieces_of(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=10)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@given(
    pieces_of(answer_text),
    st.sampled_from([[], ["STOP"], ["\n", "你"]]),
    st.sampled_from([None, 3, 12]),
    st.booleans(),
)
def test_it_assembles_the_same_reply_for_every_split(
    case: tuple[str, list[str]], stop: list[str], max_tokens: int | None, silent: bool
) -> None:
    text, pieces = case
    options: dict[str, Any] = {"stop": stop, "max_tokens": max_tokens, "silent": silent}
    results = SearchResults((PARIS, LYON))
    whole, _ = run([results, TextDelta(text), Done()], **options)
    split, chunks = run([results, *(TextDelta(p) for p in pieces), Done()], **options)
    assert message(split) == message(whole)
    assert split.finish_reason == whole.finish_reason
    assert streamed(chunks) == message(split)["content"]
    assert streamed_annotations(chunks) == message(split)["annotations"]
    content = message(split)["content"]
    assert "[^1^]" not in content
    for annotation in message(split)["annotations"]:
        span = annotation["url_citation"]
        assert content[span["start_index"] : span["end_index"]].startswith("[")
    if split.finish_reason == "length":
        assert max_tokens is not None and estimate_tokens(content) <= max_tokens
    if any(s in content for s in stop):
        pytest.fail(f"a stop sequence survived: {content!r}")


@given(pieces_of(st.text(alphabet="ab 你\n", max_size=40)), st.sampled_from(["field", "think_tags", "hidden"]))
def test_it_assembles_the_same_reasoning_for_every_split(case: tuple[str, list[str]], reasoning_format: str) -> None:
    text, pieces = case
    whole, _ = run([ThinkingDelta(text), TextDelta("ok"), Done()], reasoning_format=reasoning_format, max_tokens=8)
    split, chunks = run(
        [*(ThinkingDelta(p) for p in pieces), TextDelta("ok"), Done()], reasoning_format=reasoning_format, max_tokens=8
    )
    assert message(split) == message(whole)
    assert streamed(chunks, "reasoning_content") == message(split).get("reasoning_content", "")


# -- the official SDK reads what we send --------------------------------------------------------------


def test_the_openai_sdk_parses_every_chunk_and_the_body() -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    events: list[KimiEvent] = [ThinkingDelta("hmm"), *search_events("Sunny [^1^].")]
    reply, chunks = run(events, include_usage=True)
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[-1].usage is not None and parsed[-1].usage.completion_tokens == reply.completion_tokens
    body = ChatCompletion.model_validate(reply.completion())
    assert body.choices[0].message.content == message(reply)["content"]
    annotation = (body.choices[0].message.annotations or [])[0]
    assert (annotation.url_citation.url, annotation.url_citation.start_index) == (PARIS.url, 6)
