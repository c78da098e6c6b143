"""gateway/openai/sinks.py: the chat completions answer as a pipeline sink — SSE lines as events arrive,
or nothing until one ``chat.completion`` body; a restart after failover; the error shape mid-stream."""

from __future__ import annotations

import orjson
import pytest

from gateway.chat.sink import ReplyStats
from gateway.kimi.base import ChatCreated, Done, TextDelta
from gateway.openai.errors import UpstreamUnavailable
from gateway.openai.request import parse_chat_request
from gateway.openai.sinks import DONE, KEEPALIVE, ChatCompletionSink


def sink(*, stream: bool, keep: bool = False, **body: object) -> ChatCompletionSink:
    chat = parse_chat_request(
        {"model": "kimi", "messages": [{"role": "user", "content": "hi"}], "stream": stream, **body},
        max_messages=10,
        max_parts=10,
        max_files=1,
    )
    return ChatCompletionSink(request_id="r1", chat=chat, reasoning_format="field", prompt_text="hi", keep=keep)


def payloads(lines: list[bytes]) -> list[object]:
    out: list[object] = []
    for line in lines:
        assert line.startswith(b"data: ") and line.endswith(b"\n\n"), line
        out.append("[DONE]" if line == DONE else orjson.loads(line[6:-2]))
    return out


def content_of(lines: list[bytes]) -> str:
    chunks = [p for p in payloads(lines) if isinstance(p, dict)]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def test_a_streaming_sink_sends_each_event_as_sse_and_ends_with_done():
    s = sink(stream=True)
    assert s.streams
    s.start(chat_id="chat-1")
    sent = [*s.feed(ChatCreated(chat_id="chat-1")), *s.feed(TextDelta("Hel")), *s.feed(TextDelta("lo"))]
    assert content_of(sent) == "Hello"
    sent += s.feed(Done())
    assert s.finished
    tail = s.close()
    assert tail == [DONE]  # Done already ended the answer: only the terminator is left
    assert payloads(sent)[-1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_a_stream_the_upstream_ended_without_done_is_ended_as_done_would():
    s = sink(stream=True)
    s.start(chat_id="c")
    s.feed(TextDelta("partial"))
    assert not s.finished
    tail = list(s.close())
    assert tail[-1] == DONE
    assert payloads(tail[:-1])[-1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_a_collected_sink_sends_nothing_and_builds_one_completion():
    s = sink(stream=False)
    assert not s.streams
    s.start(chat_id="c")
    assert [s.feed(TextDelta("Hel")), s.feed(TextDelta("lo")), s.feed(Done())] == [(), (), ()]
    assert s.close() == ()
    body = s.completion()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello"  # type: ignore[index]
    assert "conversation_id" not in body


def test_start_after_a_failover_forgets_the_first_attempts_answer():
    s = sink(stream=False)
    s.start(chat_id="first")
    s.feed(TextDelta("from the first account"))
    s.start(chat_id="second")
    s.feed(TextDelta("whole answer"))
    s.feed(Done())
    assert s.completion()["choices"][0]["message"]["content"] == "whole answer"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_a_kept_conversation_is_named_by_the_upstream_chat_of_the_last_attempt(stream):
    s = sink(stream=stream, keep=True)
    s.start(chat_id="first")
    s.start(chat_id="second")
    s.feed(TextDelta("x"))
    s.feed(Done())
    assert s.conversation_id == "second"
    if not stream:
        body = s.completion()
        assert body["conversation_id"] == "second" and body["id"] == "second"


def test_an_unkept_answer_names_no_conversation():
    s = sink(stream=False, keep=False)
    s.start(chat_id="chat-1")
    assert s.conversation_id is None


def test_a_failure_after_the_first_byte_is_an_error_chunk_then_done():
    s = sink(stream=True)
    s.start(chat_id="c")
    s.feed(TextDelta("partial"))
    error = UpstreamUnavailable("Kimi is unavailable right now.", code="upstream_unavailable", status=502)
    sent = list(s.fail(error))
    assert payloads(sent) == [error.body(), "[DONE]"]


def test_keepalive_is_an_sse_comment():
    assert sink(stream=True).keepalive() == KEEPALIVE == b": keep-alive\n\n"


def test_stats_count_what_was_answered():
    s = sink(stream=False)
    assert s.stats() == ReplyStats()  # nothing started (e.g. no account)
    s.start(chat_id="c")
    s.feed(TextDelta("x" * 300))
    s.feed(Done())
    stats = s.stats()
    assert stats.completion_chars == 300
    assert stats.answer_preview == "x" * 200
    assert stats.prompt_tokens >= 1 and stats.completion_tokens >= 1


def test_max_tokens_finishes_the_answer_early():
    s = sink(stream=True, max_tokens=1)
    s.start(chat_id="c")
    s.feed(TextDelta("many words here and more words " * 5))
    assert s.finished
