"""Incremental decoders: SSE lines/events and Connect envelopes, split anywhere (protocol doc 1.9, 2.2.1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.kimi.base import ProtocolError
from gateway.kimi.framing import ConnectDecoder, ConnectFrame, ServerSentEvent, SSEDecoder, encode_envelope


def _sse_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.decode(chunk)]
    return events + decoder.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


SSE_STREAM = (
    'data: {"event":"req","id":"cq0seg"}\n\n'
    'data: {"event":"cmpl","text":"Bonjour, ça va ? 你好 🙂"}\r\n\r\n'
    ": a comment line\n"
    'data: {"event":"ping"}\r\r'
    "event: custom\ndata: line one\ndata: line two\n\n"
    'data: {"event":"all_done"}\n\n'
).encode()


def test_it_decodes_sse_events_in_one_chunk() -> None:
    events = _sse_all([SSE_STREAM])
    assert [e.data for e in events][:3] == [
        '{"event":"req","id":"cq0seg"}',
        '{"event":"cmpl","text":"Bonjour, ça va ? 你好 🙂"}',
        '{"event":"ping"}',
    ]
    assert events[3] == ServerSentEvent(data="line one\nline two", event="custom")
    assert len(events) == 5


def test_it_decodes_a_utf8_character_split_across_chunks() -> None:
    data = 'data: {"text":"🙂"}\n\n'.encode()
    cut = data.index("🙂".encode()) + 2
    decoder = SSEDecoder()
    assert decoder.decode(data[:cut]) == []
    assert decoder.decode(data[cut:]) == [ServerSentEvent(data='{"text":"🙂"}')]


def test_it_waits_for_the_newline_after_a_carriage_return() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: a\r") == []
    assert decoder.decode(b"\n") == []
    assert decoder.decode(b"\r\n") == [ServerSentEvent(data="a")]


def test_it_dispatches_a_last_event_without_blank_line_on_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b'data: {"event":"all_done"}') == []
    assert decoder.flush() == [ServerSentEvent(data='{"event":"all_done"}')]


def test_it_ignores_events_without_data() -> None:
    assert _sse_all([b"event: nothing\n\n:keepalive\n\n"]) == []


@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_it_gives_the_same_sse_events_however_the_stream_is_split(cuts: list[int]) -> None:
    assert _sse_all(_split(SSE_STREAM, cuts)) == _sse_all([SSE_STREAM])


def _connect_stream() -> bytes:
    frames = [
        {"op": "set", "eventOffset": 1, "chat": {"id": "c1", "name": "Untitled Chat"}},
        {"eventOffset": 1, "heartbeat": {}},
        {"op": "append", "mask": "block.text.content", "block": {"id": "1", "text": {"content": "不好意思 🙂"}}},
        {"eventOffset": 8, "done": {}},
    ]
    data = b"".join(encode_envelope(json.dumps(f, ensure_ascii=False).encode()) for f in frames)
    return data + encode_envelope(b"{}", flags=0x02)


def _connect_all(chunks: list[bytes]) -> list[ConnectFrame]:
    decoder = ConnectDecoder()
    frames = [frame for chunk in chunks for frame in decoder.decode(chunk)]
    return frames + decoder.flush()


def test_it_encodes_an_envelope_as_the_doc_shows() -> None:
    assert encode_envelope(b"x" * 193)[:5] == bytes([0x00, 0x00, 0x00, 0x00, 0xC1])


def test_it_decodes_connect_frames_and_the_end_stream_flag() -> None:
    frames = _connect_all([_connect_stream()])
    assert len(frames) == 5
    assert json.loads(frames[0].data)["chat"]["id"] == "c1"
    assert "🙂" in frames[2].data.decode()
    assert [f.end_stream for f in frames] == [False, False, False, False, True]


def test_it_reports_a_stream_cut_inside_a_frame() -> None:
    data = _connect_stream()
    decoder = ConnectDecoder()
    decoder.decode(data[:-3])
    with pytest.raises(ProtocolError, match="inside a Connect frame"):
        decoder.flush()


def test_it_refuses_compressed_and_oversized_frames() -> None:
    with pytest.raises(ProtocolError, match="compressed"):
        ConnectDecoder().decode(encode_envelope(b"{}", flags=0x01))
    with pytest.raises(ProtocolError, match="exceeds"):
        ConnectDecoder(max_frame_bytes=10).decode(encode_envelope(b"x" * 11))


@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_it_gives_the_same_connect_frames_however_the_stream_is_split(cuts: list[int]) -> None:
    data = _connect_stream()
    assert _connect_all(_split(data, cuts)) == _connect_all([data])
