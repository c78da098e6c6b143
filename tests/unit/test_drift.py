"""The per-turn drift accumulator and its redaction (gateway/kimi/drift.py), and the translators' notes."""

from __future__ import annotations

import json

import pytest

from gateway.kimi.base import KimiError
from gateway.kimi.citations import CitationTracker
from gateway.kimi.connect.events import ConnectTranslator
from gateway.kimi.drift import MAX_KEYS, MAX_SAMPLE_CHARS, OVERFLOW_KEY, SAMPLES_PER_KEY, Drift, redact, safe_key
from gateway.kimi.framing import ConnectFrame, ServerSentEvent
from gateway.kimi.legacy.events import LegacyTranslator

JWT = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"


def test_it_counts_per_kind_and_key_and_keeps_the_first_samples() -> None:
    drift = Drift()
    for n in range(5):
        drift.note("frame", "telemetry", {"telemetry": {"n": n}})
    drift.note("field", "telemetry")

    items = {(i.kind, i.key): i for i in drift.items()}

    assert drift and {k: i.count for k, i in items.items()} == {("frame", "telemetry"): 5, ("field", "telemetry"): 1}
    assert items[("frame", "telemetry")].samples == ({"telemetry": {"n": "<int>"}},) * SAMPLES_PER_KEY
    assert items[("field", "telemetry")].samples == ()
    assert not Drift() and Drift().items() == []


def test_it_bounds_the_keys_of_one_turn() -> None:
    drift = Drift()
    for n in range(MAX_KEYS + 10):
        drift.note("frame", f"kind{n}")

    assert len(drift.items()) == MAX_KEYS + 1
    assert drift.count("frame", OVERFLOW_KEY) == 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("block.agentArtifact", "block.agentArtifact"),
        ("REASON_FAKE_UNKNOWN", "REASON_FAKE_UNKNOWN"),
        ("search_plus.msg.type=thinking_res", "search_plus.msg.type=thinking_res"),
        ("a sentence of answer text", "<str:25>"),
        ("答案", "<str:2>"),
        (JWT, f"<str:{len(JWT)}>"),
        ("chat_d4f0c1e2a39b8765", "<str:21>"),  # an id: too many digits to be a name
        ("x" * 121, "<str:121>"),
    ],
)
def test_it_keeps_only_name_like_keys(value: str, expected: str) -> None:
    assert safe_key(value) == expected


def test_it_redacts_strings_numbers_and_odd_keys_but_keeps_the_structure() -> None:
    frame = {
        "op": "set",
        "mask": "block.text,block.parentId",
        "eventOffset": 12,
        "block": {"id": "7", "text": {"content": "the answer", "flags": "thinking"}, "score": 0.5, "ok": True},
        "message": {"role": "assistant", "status": "MESSAGE_STATUS_GENERATING", "name": "My secret title"},
        "error": {"code": "unavailable", "reason": "REASON_X", "message": "Too many people", "type": JWT},
        "a key with spaces": None,
        "list": ["one", "two", "three", "four", "five"],
    }

    assert redact(frame) == {
        "op": "set",
        "mask": "block.text,block.parentId",
        "eventOffset": "<int>",
        "block": {
            "id": "<str:1>",
            "text": {"content": "<str:10>", "flags": "thinking"},
            "score": "<float>",
            "ok": True,
        },
        "message": {"role": "assistant", "status": "MESSAGE_STATUS_GENERATING", "name": "<str:15>"},
        "error": {"code": "unavailable", "reason": "REASON_X", "message": "<str:15>", "type": f"<str:{len(JWT)}>"},
        "<key:17>": None,
        "list": ["<str:3>", "<str:3>", "<str:5>", "<+2 more>"],
    }


def test_an_enum_key_does_not_keep_text() -> None:
    assert redact({"reason": "the model said something private", "status": "id-1234567890"}) == {
        "reason": "<str:32>",
        "status": "<str:13>",
    }


def test_it_caps_the_size_of_a_sample() -> None:
    deep: object = "leaf"
    for n in range(30):
        deep = {f"k{n}": deep, "wide": [{"x" * 60: "y" * 60} for _ in range(10)]}
    huge = {f"key{n}": {"nested": [{"a": "b" * 100} for _ in range(20)]} for n in range(200)}

    for value in (deep, huge):
        assert len(json.dumps(redact(value))) <= MAX_SAMPLE_CHARS


# -- the translators' notes, fed frame by frame -------------------------------------------------------


def _connect(translator: ConnectTranslator, *frames: dict[str, object]) -> None:
    for frame in frames:
        translator.feed(ConnectFrame(flags=0, data=json.dumps(frame).encode()))


def test_the_connect_translator_notes_unknown_frames_blocks_ops_and_masks() -> None:
    translator = ConnectTranslator()
    _connect(
        translator,
        {"op": "set", "chat": {"id": "chat-1", "name": "Untitled"}},
        {"eventOffset": 1, "telemetry": {"latencyMs": 3}},
        {"op": "set", "mask": "block.slides", "block": {"id": "9", "slides": {"title": "Deck"}}},
        {
            "op": "set",
            "mask": "block.text,block.annotations",
            "block": {"id": "1", "text": {"content": "Hi"}, "annotations": []},
        },
        {"op": "replace", "mask": "message.rating", "message": {"id": "m", "rating": 5}},
        {"op": "append", "mask": "block.text.content", "block": {"id": "1", "text": {"content": " there"}}},
        {
            "op": "set",
            "mask": "message.id,message.status",
            "message": {"id": "m", "status": "MESSAGE_STATUS_COMPLETED"},
        },
        {"done": {}},
    )

    counts = {(i.kind, i.key): i.count for i in translator.drift.items()}

    assert counts == {
        ("frame", "telemetry"): 1,
        ("frame", "block.slides"): 1,  # a block of no known kind; its mask is not noted again
        ("field", "block.annotations"): 1,  # beside a known kind: a new field (its mask path counted once)
        ("field", "op:replace"): 1,
        ("field", "message.rating"): 1,
    }


def test_the_connect_translator_notes_unknown_error_reasons_and_codes() -> None:
    translator = ConnectTranslator()
    _connect(translator, {"op": "set", "block": {"id": "1", "text": {"content": "partial"}}})
    error = {"code": "quota_gone", "message": "You used it all", "details": [{"debug": {"reason": "REASON_NEW"}}]}

    with pytest.raises(KimiError):
        translator.feed(ConnectFrame(flags=2, data=json.dumps({"error": error}).encode()))

    counts = {(i.kind, i.key): i.count for i in translator.drift.items()}
    assert counts == {("error", "code:quota_gone"): 1, ("error", "REASON_NEW"): 1}


def test_known_reasons_are_not_drift() -> None:
    translator = ConnectTranslator()
    error = {"code": "resource_exhausted", "details": [{"debug": {"reason": "REASON_SERVER_OVERLOADED_FOR_FREE_USER"}}]}
    with pytest.raises(KimiError):
        translator.feed(ConnectFrame(flags=2, data=json.dumps({"error": error}).encode()))
    assert not translator.drift


def test_the_legacy_translator_notes_unknown_events_keys_and_error_types() -> None:
    translator = LegacyTranslator()
    for payload in (
        {"event": "req", "id": "r", "group_id": "g", "content": "q", "refs": []},
        {"event": "debug", "message": {"need2search": False}},  # listed by doc 1.10, ignored: not drift
        {"event": "zone_set", "zone_type": "thinking"},
        {"event": "rename", "text": "new title"},
        {"event": "cmpl", "text": "Hello", "view": "plain"},
        {"event": "search_plus", "msg": {"type": "start"}},
        {"event": "search_plus", "msg": {"type": "thinking_res"}},
        {"event": "done"},
    ):
        translator.feed(ServerSentEvent(event="", data=json.dumps(payload)))
    with pytest.raises(KimiError):
        translator.feed(
            ServerSentEvent(event="", data=json.dumps({"event": "error", "error": {"error_type": "chat.new"}}))
        )

    counts = {(i.kind, i.key): i.count for i in translator.drift.items()}
    assert counts == {
        ("frame", "rename"): 1,
        ("field", "cmpl.view"): 1,
        ("field", "search_plus.msg.type=thinking_res"): 1,
        ("error", "chat.new"): 1,
    }


def _cite(tracker: CitationTracker, *pieces: str) -> str:
    out = "".join(tracker.rewrite_text(piece) for piece in pieces)
    return out + tracker.flush_text()


def test_the_citation_tracker_notes_markers_it_strips_and_openers_it_releases() -> None:
    drift = Drift()
    tracker = CitationTracker(drift=drift)
    tracker.add_tool_contents(
        [{"searchResult": {"base": {"title": "T", "url": "https://a.example"}}}], call_id="web_search:0"
    )
    secret = "quoted private sentence"

    text = _cite(
        tracker,
        "A\ue3a0cite\U0001f6e0web_search:0#0:~:text=" + secret + "\U0001f6e0",  # mapped: not drift
        " B\U0001f6e0web_search:4#1\U0001f6e0",  # names no result: stripped
        " C\ue3a0article\U0001f6e0header\U0001f3a8",  # an article header has nothing to map (C.1): not drift
        " D\ue3a0cite\U0001f6e0web_search:5#0:~:text=" + secret + "\ue3a8",
        " E\ue3a0cite\U0001f6e0 never closed " + secret,
    )

    assert text.startswith("A[^1^] B C D E") and "never closed" in text
    items = {(i.kind, i.key): i for i in drift.items()}
    assert {k: i.count for k, i in items.items()} == {
        ("citation", "bare:unmapped"): 1,
        ("citation", "cite:unmapped"): 1,
        ("citation", "cite:unclosed"): 1,
    }
    assert items[("citation", "cite:unmapped")].samples == (
        {
            "form": "cite",
            "refs": ["web_search:5#0"],
            "chars": len(f"\ue3a0cite\U0001f6e0web_search:5#0:~:text={secret}\ue3a8"),
        },
    )
    assert secret not in json.dumps([i.samples for i in items.values()])
