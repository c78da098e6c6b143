"""Legacy SSE events -> events (protocol doc 1.5, 1.10-1.12, traces 1.19)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.kimi.base import (
    AuthError,
    BadRequest,
    ChatNotFound,
    ContentFiltered,
    Done,
    Heartbeat,
    KimiEvent,
    Overloaded,
    ProtocolError,
    RateLimited,
    SearchResult,
    SearchResults,
    StreamBusy,
    TextDelta,
    ThinkingDelta,
    Unavailable,
)
from gateway.kimi.framing import ServerSentEvent, SSEDecoder
from gateway.kimi.legacy.events import LegacyTranslator, legacy_error


def sse(payload: dict[str, Any] | str) -> ServerSentEvent:
    return ServerSentEvent(data=payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False))


def run(payloads: list[dict[str, Any] | str], *, continuing: bool = False) -> list[KimiEvent]:
    translator = LegacyTranslator(continuing=continuing)
    events = [event for p in payloads for event in translator.feed(sse(p))]
    return events + translator.finish()


REQ = {"event": "req", "id": "seg1", "group_id": "g1", "content": "hi", "refs": []}
RESP = {"event": "resp", "id": "seg2", "group_id": "g1"}
DONE = {"event": "all_done"}


def test_it_translates_a_plain_reply() -> None:
    events = run(
        [REQ, RESP, {"event": "ping"}, {"event": "cmpl", "text": "Bon"}, {"event": "cmpl", "text": "jour !"}, DONE]
    )
    assert events == [Heartbeat(), TextDelta("Bon"), TextDelta("jour !"), Done(finish_reason="stop", message_id="seg2")]


def test_it_translates_k1_thinking() -> None:
    events = run(
        [
            REQ,
            RESP,
            {"event": "k1", "text": "13 x 17"},
            {"event": "k1", "summary": "found"},
            {"event": "cmpl", "text": "No."},
            DONE,
        ]
    )
    assert events[:2] == [ThinkingDelta("13 x 17"), TextDelta("No.")]


def test_it_collects_search_results_in_reference_order() -> None:
    payloads = [
        REQ,
        {"event": "search_plus", "msg": {"type": "start"}},
        {"event": "search_plus", "msg": {"type": "get_res", "title": "Notes", "url": "https://blog.example/rust"}},
        {"event": "search_plus", "msg": {"type": "get_res", "title": "Log", "url": "https://docs.example/log"}},
        {
            "event": "ref_docs",
            "ref_cards": [{"idx": 2, "url": "https://docs.example/log"}, {"idx": 3, "url": "https://c.example"}],
        },
        {"event": "cmpl", "text": "1.83 [^1^]."},
        DONE,
    ]
    events = run(payloads)
    results = [r for e in events if isinstance(e, SearchResults) for r in e.results]
    assert [r.url for r in results] == ["https://blog.example/rust", "https://docs.example/log", "https://c.example"]
    assert results[0] == SearchResult(title="Notes", url="https://blog.example/rust")
    assert TextDelta("1.83 [^1^].") in events


def test_it_reports_length_as_the_finish_reason() -> None:
    assert run([REQ, {"event": "cmpl", "text": "long"}, {"event": "length"}, DONE])[-1] == Done("length", None)


def test_it_ignores_unknown_events_and_accepts_done_marker() -> None:
    assert run([{"event": "rename"}, {"event": "loading"}, {"event": "cmpl", "text": "x"}, "[DONE]"])[-1] == Done()


def test_it_reports_eof_without_all_done() -> None:
    with pytest.raises(ProtocolError, match="all_done"):
        run([REQ, {"event": "cmpl", "text": "cut"}])


def test_it_refuses_data_that_is_not_json() -> None:
    with pytest.raises(ProtocolError):
        run(["{not json"])


def test_it_treats_an_empty_reply_as_overloaded() -> None:
    with pytest.raises(Overloaded):
        run([REQ, RESP, DONE])


@pytest.mark.parametrize(
    ("error_type", "after_text", "expected"),
    [
        ("openai.completion.stream", False, Overloaded),
        ("openai.completion.stream", True, Overloaded),
        ("chat.quota_exceeded", False, RateLimited),
        ("openai.completion.content_filter", True, ContentFiltered),
        ("something.unknown", True, ContentFiltered),
        ("something.unknown", False, Unavailable),
        ("openai.completion.token_length_too_long", False, BadRequest),
    ],
)
def test_it_maps_in_stream_errors(error_type: str, after_text: bool, expected: type) -> None:
    payloads: list[dict[str, Any] | str] = [REQ]
    if after_text:
        payloads.append({"event": "cmpl", "text": "partial"})
    payloads.append({"event": "error", "error": {"error_type": error_type, "message": "stopped"}})
    with pytest.raises(expected):
        run(payloads)


@pytest.mark.parametrize(
    ("body", "status", "continuing", "expected"),
    [
        ({"error_type": "auth.token.invalid"}, 401, False, AuthError),
        ({"error_type": "chat.user_stream_pushing"}, 400, False, StreamBusy),
        ({"error_type": "chat.not_found"}, 404, True, ChatNotFound),
        ({"error_type": "chat.forbidden"}, 403, True, ContentFiltered),
        ({"error_type": "validation.error", "detail": ["Content is a required field"]}, 400, False, BadRequest),
        ({"error_type": "chat.quota_exceeded"}, 429, False, RateLimited),
        ({"code": -1000, "message": "system error"}, 500, False, Unavailable),
    ],
)
def test_it_maps_http_error_bodies(body: dict, status: int, continuing: bool, expected: type) -> None:
    assert type(legacy_error(body, status=status, continuing=continuing)) is expected


STREAM = "".join(
    f"data: {json.dumps(p, ensure_ascii=False)}\n\n"
    for p in [
        REQ,
        RESP,
        {"event": "k1", "text": "思考中"},
        {"event": "ping"},
        {"event": "cmpl", "text": "Ça va 🙂"},
        DONE,
    ]
).encode()


def _events_from_chunks(chunks: list[bytes]) -> list[KimiEvent]:
    decoder, translator = SSEDecoder(), LegacyTranslator()
    events = [e for chunk in chunks for s in decoder.decode(chunk) for e in translator.feed(s)]
    return events + [e for s in decoder.flush() for e in translator.feed(s)] + translator.finish()


@given(cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
def test_it_gives_the_same_events_however_the_bytes_are_split(cuts: list[int]) -> None:
    points = sorted({c % (len(STREAM) + 1) for c in cuts})
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _events_from_chunks(chunks) == _events_from_chunks([STREAM])
    assert TextDelta("Ça va 🙂") in _events_from_chunks([STREAM])
