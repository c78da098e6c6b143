"""The Messages answer from upstream events (gateway/anthropic/sinks.py, events.py, errors.py): the SSE
event sequence, the collected body, thinking signatures, stop reasons, pings and the error event."""

from __future__ import annotations

import json

import pytest

from gateway.anthropic.content import ContentLimits
from gateway.anthropic.errors import anthropic_error_body, anthropic_status
from gateway.anthropic.request import parse_messages_request
from gateway.anthropic.sinks import MessagesSink
from gateway.anthropic.thinking import signing_key, thinking_signature
from gateway.kimi.base import Done, SearchResult, SearchResults, TextDelta, ThinkingDelta
from gateway.openai.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    PoolBusy,
    RateLimitExceeded,
    UpstreamUnavailable,
)

KEY = signing_key("test secret")


def sink_for(*, stream: bool = True, probe: bool = False, nonce: str = "", **body: object) -> MessagesSink:
    body = {
        "model": "claude-x",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "q"}],
        "stream": stream,
        **body,
    }
    request = parse_messages_request(body, limits=ContentLimits(10, None), max_messages=10, max_files=1)
    sink = MessagesSink(
        request_id="r1", request=request, prompt_text="the prompt", tool_nonce=nonce, signing_key=KEY, probe=probe
    )
    sink.start(chat_id="c1")
    return sink


def run(sink: MessagesSink, *events: object) -> list[tuple[str, dict]]:
    raw = b""
    for event in events:
        raw += b"".join(sink.feed(event))  # type: ignore[arg-type]
        if sink.finished:
            break
    raw += b"".join(sink.close())
    out = []
    for chunk in raw.decode().split("\n\n"):
        if chunk:
            name, data = chunk.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            out.append((name[7:], json.loads(data[6:])))
    return out


def test_a_text_answer_is_the_official_sequence():
    got = run(sink_for(), TextDelta("Hel"), TextDelta("lo"), Done())
    assert [name for name, _ in got] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = got[0][1]["message"]
    assert (start["id"], start["model"], start["content"], start["stop_reason"]) == ("msg_r1", "claude-x", [], None)
    assert start["usage"]["input_tokens"] == 3  # "the prompt": 10 characters
    assert got[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert got[2][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert got[5][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


def test_thinking_is_a_signed_block_before_the_text():
    got = run(
        sink_for(thinking={"type": "enabled", "budget_tokens": 5000}),
        ThinkingDelta("hm"),
        ThinkingDelta("m"),
        TextDelta("ok"),
        Done(),
    )
    deltas = [(d["index"], d["delta"]) for n, d in got if n == "content_block_delta"]
    signature = thinking_signature("hmm", key=KEY)
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "hm"}),
        (0, {"type": "thinking_delta", "thinking": "m"}),
        (0, {"type": "signature_delta", "signature": signature}),
        (1, {"type": "text_delta", "text": "ok"}),
    ]
    assert signature != thinking_signature("hmm", key=signing_key("another secret"))


def test_omitted_thinking_sends_only_the_signature_and_the_body_has_no_text():
    sink = sink_for(stream=False, thinking={"type": "adaptive", "display": "omitted"})
    run(sink, ThinkingDelta("private"), TextDelta("ok"), Done())
    thinking, text = sink.message()["content"]  # type: ignore[misc]
    assert thinking == {"type": "thinking", "thinking": "", "signature": thinking_signature("private", key=KEY)}
    assert text == {"type": "text", "text": "ok"}


def test_reasoning_not_asked_for_is_dropped():
    got = run(sink_for(), ThinkingDelta("stray"), TextDelta("ok"), Done())
    assert [d["content_block"]["type"] for n, d in got if n == "content_block_start"] == ["text"]


def test_stop_sequence_and_max_tokens():
    sink = sink_for(stream=False, stop_sequences=["END", "STOP"])
    run(sink, TextDelta("one ST"), TextDelta("OP two"), Done())
    body = sink.message()
    assert (body["stop_reason"], body["stop_sequence"], body["content"]) == (
        "stop_sequence",
        "STOP",
        [{"type": "text", "text": "one "}],
    )
    sink = sink_for(stream=False, max_tokens=2)
    run(sink, TextDelta("abcdefghijkl"), Done())
    assert (sink.message()["stop_reason"], sink.message()["content"]) == (
        "max_tokens",
        [{"type": "text", "text": "abcdefgh"}],
    )


def test_a_probe_is_a_minimal_valid_message():
    got = run(sink_for(probe=True, max_tokens=1), Done())
    assert [n for n, _ in got] == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert got[3][1]["delta"]["stop_reason"] == "max_tokens"
    sink = sink_for(stream=False, probe=True, max_tokens=1)
    run(sink, Done())
    assert sink.message()["content"] == [{"type": "text", "text": ""}]


def test_a_tool_call_is_a_tool_use_block_and_ends_with_tool_use():
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    sink = sink_for(tools=tools, nonce="n1")
    call = (
        '<tool_calls id="n1">\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
        "</invoke>\n</tool_calls>"
    )
    got = run(sink, TextDelta("Checking. "), TextDelta(call), TextDelta(" trailing"), Done())
    starts = [d["content_block"] for n, d in got if n == "content_block_start"]
    assert starts[0] == {"type": "text", "text": ""}
    assert starts[1]["type"] == "tool_use" and starts[1]["id"].startswith("toolu_") and starts[1]["input"] == {}
    (partial,) = [d["delta"]["partial_json"] for n, d in got if n == "content_block_delta" and d["index"] == 1]
    assert json.loads(partial) == {"city": "Paris"}
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert sink.drains  # the rest of the upstream answer is read, unforwarded


def test_search_results_are_blocks_and_references_are_citations():
    hit = SearchResult(title="Paris", url="https://example.org/p", snippet="Sunny.")
    sink = sink_for(stream=False, tools=[{"type": "web_search_20250305", "name": "web_search"}])
    run(sink, SearchResults((hit,)), TextDelta("Sunny [^1^]."), Done())
    use, result, text = sink.message()["content"]  # type: ignore[misc]
    assert use["type"] == "server_tool_use" and use["input"] == {"query": "q"} and use["id"].startswith("srvtoolu_")
    assert result["tool_use_id"] == use["id"] and result["content"][0]["url"] == "https://example.org/p"
    assert text["text"] == "Sunny [1]."
    assert [(c["url"], c["cited_text"]) for c in text["citations"]] == [("https://example.org/p", "Sunny.")]
    assert sink.message()["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_a_ping_before_anything_else_comes_after_message_start():
    sink = sink_for()
    first = sink.keepalive()
    assert first.startswith(b"event: message_start\n") and first.endswith(b'event: ping\ndata: {"type":"ping"}\n\n')
    assert sink.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_a_failure_after_the_first_byte_is_an_error_event():
    sink = sink_for()
    sink.feed(TextDelta("part"))
    (raw,) = sink.fail(UpstreamUnavailable("Kimi failed to answer.", code="upstream_error", status=502))
    assert raw == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Kimi failed to answer."},'
        b'"request_id":"r1"}\n\n'
    )


@pytest.mark.parametrize(
    "error, status, kind",
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (AuthenticationFailed("who"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (
            RateLimitExceeded("No Kimi account can serve this request now (cooling).", retry_after=5),
            429,
            "rate_limit_error",
        ),
        (PoolBusy("No Kimi account can serve this request now (busy)."), 529, "overloaded_error"),
        (UpstreamUnavailable("Kimi is overloaded", code="upstream_overloaded"), 529, "overloaded_error"),
        (UpstreamUnavailable("down", status=502), 502, "api_error"),
    ],
)
def test_error_types_and_statuses(error, status, kind):
    assert anthropic_status(error) == status
    assert anthropic_error_body(error) == {"type": "error", "error": {"type": kind, "message": error.message}}
