"""Connect frames -> events (protocol doc 2.7, 2.8, 2.13, traces 2.15)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.kimi.base import (
    AuthError,
    BadRequest,
    ChatCreated,
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
from gateway.kimi.connect.events import ConnectTranslator, connect_error
from gateway.kimi.framing import ConnectDecoder, ConnectFrame, encode_envelope

CHAT = {"op": "set", "eventOffset": 1, "chat": {"id": "chat-1", "name": "Untitled Chat"}}
USER = {"op": "set", "mask": "message", "message": {"id": "u1", "role": "user", "parentId": "chat-1"}}
ASSISTANT = {"op": "set", "mask": "message", "message": {"id": "a1", "role": "assistant", "parentId": "u1"}}
STATUS = {"op": "set", "mask": "message.status", "message": {"id": "a1", "status": "MESSAGE_STATUS_COMPLETED"}}
DONE = {"eventOffset": 9, "done": {}}
HEARTBEAT = {"eventOffset": 1, "heartbeat": {}}


def text(block_id: str, content: str, op: str = "append") -> dict[str, Any]:
    mask = "block.text.content" if op == "append" else "block.text"
    return {"op": op, "mask": mask, "block": {"id": block_id, "text": {"content": content}}}


def think(block_id: str, content: str, op: str = "append") -> dict[str, Any]:
    return {"op": op, "mask": "block.think.content", "block": {"id": block_id, "think": {"content": content}}}


def frame(payload: dict[str, Any], flags: int = 0) -> ConnectFrame:
    return ConnectFrame(flags=flags, data=json.dumps(payload, ensure_ascii=False).encode())


def end(error: dict[str, Any] | None = None) -> ConnectFrame:
    return frame({"error": error} if error else {}, flags=0x02)


def run(frames: list[ConnectFrame], *, continuing: bool = False) -> list[KimiEvent]:
    translator = ConnectTranslator(continuing=continuing)
    events = [event for f in frames for event in translator.feed(f)]
    return events + translator.finish()


def overload_error(reason: str = "REASON_SERVER_OVERLOADED_FOR_FREE_USER", code: str = "resource_exhausted") -> dict:
    detail = {"type": "common.error.v1.ErrorDetail", "debug": {"reason": reason, "retryAfterSeconds": 30}}
    return {"code": code, "message": "Too many people are chatting", "details": [detail]}


def test_it_translates_a_plain_reply() -> None:
    frames = [CHAT, HEARTBEAT, USER, ASSISTANT, text("1", "Hi", op="set"), text("1", " there!"), STATUS, DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert events == [
        ChatCreated("chat-1"),
        Heartbeat(),
        TextDelta("Hi"),
        TextDelta(" there!"),
        Done(finish_reason="stop", message_id="a1"),
    ]


def test_it_translates_thinking_blocks() -> None:
    stage = {"op": "set", "mask": "block.stage", "block": {"id": "1", "stage": {"name": "STAGE_NAME_THINKING"}}}
    frames = [CHAT, ASSISTANT, stage, think("2", "Try", op="set"), think("2", " 13."), text("3", "No.", op="set")]
    events = run([frame(f) for f in [*frames, DONE]] + [end()])
    assert events[1:4] == [ThinkingDelta("Try"), ThinkingDelta(" 13."), TextDelta("No.")]


def test_it_emits_only_the_new_part_of_a_set_repeating_a_block() -> None:
    frames = [CHAT, text("1", "Hel", op="set"), text("1", "lo"), text("1", "Hello world", op="set"), DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" world")]


def search_frame() -> dict[str, Any]:
    results = [
        {"searchResult": {"id": "1", "refIndex": "web_search:0#0", "base": {"title": "A", "url": "https://a.example"}}},
        {"searchResult": {"id": "2", "refIndex": "web_search:0#1", "base": {"title": "B", "url": "https://b.example"}}},
    ]
    tool = {"contents": results, "status": "STATUS_DONE"}
    return {"op": "set", "mask": "block.tool.contents,block.tool.status", "block": {"id": "1", "tool": tool}}


def test_it_emits_search_results_in_reference_order_without_duplicates() -> None:
    used = {
        "message": {"id": "a1", "refs": {"usedSearchChunks": [{"base": {"title": "B", "url": "https://b.example"}}]}}
    }
    frames = [CHAT, search_frame(), text("2", "See [^2^].", op="set"), used, DONE]
    events = run([frame(f) for f in frames] + [end()])
    results = [e for e in events if isinstance(e, SearchResults)]
    assert results == [SearchResults((SearchResult("A", "https://a.example"), SearchResult("B", "https://b.example")))]
    assert TextDelta("See [^2^].") in events


def test_it_normalises_cite_tokens_to_caret_markers() -> None:
    token = "\ue200cite\ue202web_search:0#1\ue201"
    frames = [CHAT, search_frame(), text("2", "Sunny " + token[:4], op="set"), text("2", token[4:] + "."), DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sunny [^2^]."


def test_it_resolves_cite_tokens_through_message_references() -> None:
    token = "\ue200cite\ue202turn9view3\ue201"
    refs = {
        "message": {
            "id": "a1",
            "references": [
                {"matchedText": token, "items": [{"search": {"base": {"title": "C", "url": "https://c.example"}}}]}
            ],
        }
    }
    frames = [CHAT, text("1", "Rain " + token + " today", op="set"), refs, DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Rain [^1^] today"
    assert SearchResults((SearchResult("C", "https://c.example"),)) in events


def test_it_ignores_unknown_frames_and_block_kinds() -> None:
    unknown_block = {"op": "set", "mask": "block.agentArtifact", "block": {"id": "9", "agentArtifact": {}}}
    notice = {"notification": {"type": "TYPE_MODEL_DEGRADE", "message": "fallback"}}
    frames = [CHAT, {"telemetry": {}}, unknown_block, notice, text("1", "ok", op="set"), DONE]
    assert run([frame(f) for f in frames] + [end()])[1:] == [TextDelta("ok"), Done(message_id=None)]


def test_it_raises_the_error_frame_that_follows_done() -> None:
    frames = [frame(f) for f in [CHAT, text("1", "Partial", op="set"), DONE]] + [end(overload_error())]
    translator = ConnectTranslator()
    assert translator.feed(frames[0]) == [ChatCreated("chat-1")]
    assert translator.feed(frames[1]) == [TextDelta("Partial")]
    assert translator.feed(frames[2]) == []
    with pytest.raises(Overloaded) as caught:
        translator.feed(frames[3])
    assert caught.value.upstream_code == "resource_exhausted:REASON_SERVER_OVERLOADED_FOR_FREE_USER"


def test_it_reports_eof_without_end_stream_frame() -> None:
    with pytest.raises(ProtocolError, match="end-of-stream"):
        run([frame(CHAT), frame(text("1", "cut", op="set"))])


def test_it_treats_an_empty_completed_reply_as_overloaded() -> None:
    with pytest.raises(Overloaded, match="empty"):
        run([frame(f) for f in [CHAT, ASSISTANT, STATUS, DONE]] + [end()])


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("REASON_COMPLETION_OVERLOADED", Overloaded), ("REASON_CONTENT_FILTER", ContentFiltered)],
)
def test_it_fails_on_a_retracting_block_exception(reason: str, expected: type) -> None:
    error = {"reason": reason, "localizedMessage": {"message": "sorry"}, "severity": "SEVERITY_BLOCK_RETRACT"}
    exception = {"op": "set", "mask": "block.exception", "block": {"id": "2", "exception": {"error": error}}}
    with pytest.raises(expected, match="sorry"):
        run([frame(f) for f in [CHAT, text("1", "Part", op="set"), exception]])


@pytest.mark.parametrize(
    ("error", "continuing", "expected"),
    [
        (overload_error(), False, Overloaded),
        (overload_error("REASON_USAGE_LIMIT_EXCEEDED"), False, RateLimited),
        (overload_error("REASON_MEMBERSHIP_REQUIRED", code="permission_denied"), False, RateLimited),
        ({"code": "unauthenticated", "message": "invalid user token"}, False, AuthError),
        ({"code": "failed_precondition", "message": "generating"}, False, StreamBusy),
        ({"code": "aborted", "message": "generating"}, False, StreamBusy),
        ({"code": "not_found", "message": "no chat"}, True, ChatNotFound),
        ({"code": "not_found", "message": "no file"}, False, BadRequest),
        ({"code": "invalid_argument", "message": "bad parent"}, True, BadRequest),
        ({"code": "internal", "message": "boom"}, False, Unavailable),
        ({"code": "something_new"}, False, Unavailable),
    ],
)
def test_it_maps_connect_error_codes(error: dict, continuing: bool, expected: type) -> None:
    mapped = connect_error(error, continuing=continuing)
    assert type(mapped) is expected


def test_it_reads_retry_after_from_the_error_details() -> None:
    mapped = connect_error(overload_error("REASON_USAGE_LIMIT_EXCEEDED"))
    assert isinstance(mapped, RateLimited)
    assert mapped.retry_after == 30


def _byte_stream() -> bytes:
    frames = [CHAT, HEARTBEAT, USER, ASSISTANT, think("1", "思考", op="set"), search_frame()]
    frames += [text("2", "Ça va 🙂 ", op="set"), text("2", "\ue200cite\ue202web_search:0#0\ue201"), STATUS, DONE]
    data = b"".join(encode_envelope(json.dumps(f, ensure_ascii=False).encode()) for f in frames)
    return data + encode_envelope(b"{}", flags=0x02)


def _events_from_chunks(chunks: list[bytes]) -> list[KimiEvent]:
    decoder, translator = ConnectDecoder(), ConnectTranslator()
    events = [e for chunk in chunks for f in decoder.decode(chunk) for e in translator.feed(f)]
    return events + [e for f in decoder.flush() for e in translator.feed(f)] + translator.finish()


@given(cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
def test_it_gives_the_same_events_however_the_bytes_are_split(cuts: list[int]) -> None:
    data = _byte_stream()
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _events_from_chunks(chunks) == _events_from_chunks([data])
    assert "".join(e.text for e in _events_from_chunks([data]) if isinstance(e, TextDelta)) == "Ça va 🙂 [^1^]"


# -- stream shapes peers' parsers tolerate (kimi-web-protocol.md C.8) --------------------------------


def flagged_text(block_id: str, content: str, flags: object, op: str = "set") -> dict[str, Any]:
    return {"op": op, "mask": "block.text", "block": {"id": block_id, "text": {"content": content, "flags": flags}}}


def multistage(block_id: str, status: str, content: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "id": block_id,
        "multiStage": {"stages": [{"name": "STAGE_NAME_THINKING", "status": status}]},
    }
    if content is not None:
        block["text"] = {"content": content}
    return {"op": "set", "mask": "block.multiStage", "block": block}


def texts(events: list[KimiEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def thoughts(events: list[KimiEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ThinkingDelta))


@pytest.mark.parametrize("flags", ["thinking", ["thinking"]])
def test_it_reads_text_flagged_thinking_as_reasoning(flags: object) -> None:
    frames = [CHAT, flagged_text("1", "Try", flags), text("1", " 13."), flagged_text("2", "No.", "answer"), DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert (thoughts(events), texts(events)) == ("Try 13.", "No.")


def test_it_reads_text_inside_a_thinking_multistage_as_reasoning() -> None:
    frames = [CHAT, multistage("1", "STAGE_STATUS_START", "Try"), text("1", " 13."), multistage("1", "completed")]
    frames += [text("2", "No.", op="set"), DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert (thoughts(events), texts(events)) == ("Try 13.", "No.")


def test_it_reads_text_under_an_open_thinking_stage_as_reasoning() -> None:
    under = {"op": "set", "mask": "block.text", "block": {"id": "2", "parentId": "1", "text": {"content": "Hm."}}}
    after = {"op": "set", "mask": "block.text", "block": {"id": "3", "parentId": "1", "text": {"content": "Yes."}}}
    frames = [CHAT, multistage("1", "STAGE_STATUS_START"), under, multistage("1", "STAGE_STATUS_END"), after, DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert (thoughts(events), texts(events)) == ("Hm.", "Yes.")


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (["Hel", "lo", " world"], "Hello world"),  # deltas: appended
        (["Hel", "Hello", "Hello world"], "Hello world"),  # cumulative: only the new part
    ],
)
def test_it_reads_frames_without_op(contents: list[str], expected: str) -> None:
    opless = [{"mask": "block.text.content", "block": {"id": "1", "text": {"content": c}}} for c in contents]
    events = run([frame(f) for f in [CHAT, *opless, DONE]] + [end()])
    assert texts(events) == expected


def test_it_takes_the_answer_from_the_completed_message_when_no_text_came() -> None:
    blocks = [{"id": "1", "text": {"content": "Only here."}}, {"id": "2", "text": {"content": "And here."}}]
    completed = {"op": "set", "mask": "message", "message": {"id": "a1", "status": "MESSAGE_STATUS_COMPLETED"}}
    completed["message"] |= {"role": "assistant", "blocks": blocks}
    events = run([frame(f) for f in [CHAT, ASSISTANT, completed, DONE]] + [end()])
    assert texts(events) == "Only here.\nAnd here." and events[-1] == Done(message_id="a1")


def test_it_does_not_repeat_streamed_text_found_again_in_the_completed_message() -> None:
    completed = {"op": "set", "mask": "message", "message": {"id": "a1", "role": "assistant"}}
    completed["message"]["blocks"] = [{"id": "1", "text": {"content": "Streamed."}}]
    events = run([frame(f) for f in [CHAT, ASSISTANT, text("1", "Streamed.", op="set"), completed, DONE]] + [end()])
    assert texts(events) == "Streamed."


def test_it_ignores_the_user_message_blocks() -> None:
    user = {"op": "set", "mask": "message", "message": {"id": "u1", "role": "user"}}
    user["message"]["blocks"] = [{"id": "text_0_0", "text": {"content": "the question"}}]
    with pytest.raises(Overloaded, match="empty"):
        run([frame(f) for f in [CHAT, user, ASSISTANT, STATUS, DONE]] + [end()])


def test_it_accepts_a_close_after_done_without_the_end_frame() -> None:
    events = run([frame(f) for f in [CHAT, ASSISTANT, text("1", "Hi", op="set"), STATUS, DONE]])
    assert events[-2:] == [TextDelta("Hi"), Done(message_id="a1")]


def test_it_still_reports_a_close_after_done_without_any_text_as_empty() -> None:
    with pytest.raises(Overloaded, match="empty"):
        run([frame(f) for f in [CHAT, ASSISTANT, STATUS, DONE]])


def test_it_joins_successive_text_blocks_with_a_newline() -> None:
    frames = [CHAT, text("1", "One.", op="set"), search_frame(), text("3", "Two.", op="set"), text("3", " Still two.")]
    frames += [text("4", "Three.\n", op="set"), text("5", "Four.", op="set"), DONE]
    events = run([frame(f) for f in frames] + [end()])
    assert texts(events) == "One.\nTwo. Still two.\nThree.\nFour."


def _shapes_stream() -> bytes:
    completed = {"op": "set", "mask": "message", "message": {"id": "a1", "role": "assistant"}}
    completed["message"]["blocks"] = [{"id": "5", "text": {"content": "ignored: text already came"}}]
    frames = [CHAT, ASSISTANT, multistage("1", "STAGE_STATUS_START", "思考"), text("1", " 🙂"), multistage("1", "end")]
    frames += [flagged_text("2", "More thought.", "thinking"), text("2", " Done.")]
    frames += [
        text("3", "Ça va ", op="set"),
        {"mask": "block.text.content", "block": {"id": "3", "text": {"content": "Ça va bien"}}},
    ]
    frames += [
        {"block": {"id": "3", "text": {"content": " 🙂"}}},
        text("4", "Zweiter Teil.", op="set"),
        completed,
        DONE,
    ]
    # no 0x02 frame: the stream closes after `done`
    return b"".join(encode_envelope(json.dumps(f, ensure_ascii=False).encode()) for f in frames)


@given(cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=30))
def test_it_reads_the_peer_shapes_however_the_bytes_are_split(cuts: list[int]) -> None:
    data = _shapes_stream()
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    events = _events_from_chunks(chunks)
    assert events == _events_from_chunks([data])
    assert thoughts(events) == "思考 🙂More thought. Done."
    assert texts(events) == "Ça va bien 🙂\nZweiter Teil."
    assert events[-1] == Done(message_id="a1")
