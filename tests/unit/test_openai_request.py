"""Request bodies -> ChatRequest, and the 400s that name the field."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.openai.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.openai.flatten import flatten_history
from gateway.openai.request import ChatRequest, parse_chat_request, parse_json_body

PNG = b"\x89PNG\r\n\x1a\nfake"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PDF = b"%PDF-1.4 fake"
LIMITS = {"max_messages": 10, "max_parts": 8, "max_files": 2, "max_file_bytes": 1000}


def user(content: object = "hi") -> dict[str, object]:
    return {"role": "user", "content": content}


def parse(**body: Any) -> ChatRequest:
    body.setdefault("messages", [user()])
    return parse_chat_request(body, **LIMITS)


def refusal(body: object, error: type[GatewayError] = InvalidRequest) -> GatewayError:
    with pytest.raises(error) as info:
        parse_chat_request(body, **LIMITS)
    return info.value


# -- JSON --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe{}", b"[NaN]", b"[" * 100_000])
def test_it_refuses_malformed_json(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_json_body(raw)
    assert info.value.code == "invalid_json"
    assert info.value.status == 400


def test_it_decodes_json() -> None:
    assert parse_json_body(b'{"model": "kimi"}') == {"model": "kimi"}


# -- what is accepted --------------------------------------------------------------------------------


def test_it_applies_defaults() -> None:
    request = parse()
    assert request.model.requested == "kimi"
    assert (request.stream, request.include_usage, request.max_tokens, request.stop) == (False, False, None, ())
    assert (request.keep_conversation, request.continue_conversation, request.reasoning_format) == (False, None, None)
    assert request.messages[0].text == "hi"
    assert request.files == ()


def test_it_reads_the_openai_options() -> None:
    request = parse(
        model="kimi-thinking",
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=50,
        stop="\n\n",
        user="alice",
        n=1,
        logprobs=False,
        temperature=0.2,
        top_p=1,
        seed=7,
        tools=[],
        tool_choice="auto",
        response_format={"type": "text"},
        unknown_field={"x": 1},
    )
    assert request.model.thinking
    assert (request.stream, request.include_usage, request.max_tokens, request.stop) == (True, True, 50, ("\n\n",))
    assert request.user == "alice"
    assert request.ignored == ("temperature", "top_p", "seed")
    assert request.response_format is None  # {"type": "text"} asks for nothing
    assert request.tools is None  # an empty tool list declares nothing


def test_it_prefers_max_completion_tokens() -> None:
    assert parse(max_tokens=50, max_completion_tokens=20).max_tokens == 20


def test_an_integer_written_with_a_point_is_an_integer():
    # JSON Schema's "integer" (and the published description) includes 20.0; 20.5 is still refused.
    assert parse(max_tokens=20.0).max_tokens == 20
    assert refusal({"messages": [user()], "max_tokens": 20.5}).param == "max_tokens"


def test_it_ignores_include_usage_without_streaming() -> None:
    assert not parse(stream_options={"include_usage": True}).include_usage


def test_it_drops_empty_and_repeated_stop_sequences() -> None:
    assert parse(stop=["a", "", "a", "b"]).stop == ("a", "b")


@pytest.mark.parametrize(
    ("conversation_id", "keep", "continue_id"),
    [(None, False, None), ("new", True, None), ("none", True, None), ("NEW", True, None), ("c-123", True, "c-123")],
)
def test_it_reads_conversation_id(conversation_id: str | None, keep: bool, continue_id: str | None) -> None:
    request = parse(conversation_id=conversation_id)
    assert (request.keep_conversation, request.continue_conversation) == (keep, continue_id)


def test_it_turns_use_search_into_the_search_flag() -> None:
    assert parse(model="kimi", use_search=True).model.search
    assert not parse(model="kimi", use_search=False).model.search


@pytest.mark.parametrize("value", ["field", "think_tags", "hidden"])
def test_it_reads_reasoning_format(value: str) -> None:
    assert parse(reasoning_format=value).reasoning_format == value


@pytest.mark.parametrize(
    ("value", "effort"),
    [("none", "none"), ("minimal", "low"), ("low", "low"), ("medium", "high"), ("high", "high"), ("HIGH", "high")],
)
def test_it_maps_reasoning_effort_onto_the_neutral_scale(value: str, effort: str) -> None:
    # kimi-web-protocol.md C.6; the neutral value reaches the upstream turn.
    request = parse(reasoning_effort=value)
    assert request.reasoning_effort == effort
    turn = request.model.turn_request(text="q", reasoning_effort=request.reasoning_effort)
    assert turn.reasoning_effort == effort and turn.reasons is (effort != "none")


def test_it_leaves_the_effort_to_the_model_when_none_is_given() -> None:
    assert parse().reasoning_effort is None
    assert parse(model="kimi-thinking").model.turn_request(text="q").reasons
    assert not parse(model="kimi").model.turn_request(text="q").reasons


def test_it_takes_files_from_the_last_user_message_only() -> None:
    old = user([{"type": "text", "text": "old"}, {"type": "image_url", "image_url": {"url": PNG_URL}}])
    new = user(
        [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": "https://example.com/cat.png"},
            {"type": "file", "file": {"file_data": base64.b64encode(PDF).decode(), "filename": "a.pdf"}},
        ]
    )
    request = parse(messages=[old, {"role": "assistant", "content": "ok"}, new])
    assert [(f.kind, f.url) for f in request.files] == [("image", "https://example.com/cat.png"), ("file", None)]
    pdf = request.files[1].blob
    assert pdf is not None and (pdf.name, pdf.mime_type, pdf.data) == ("a.pdf", "application/pdf", PDF)
    earlier = request.messages[0].attachments[0]
    assert (earlier.blob, earlier.label) == (None, "inline image")
    assert request.messages[2].text == "look"


@pytest.mark.parametrize(
    ("part", "name", "mime", "data"),
    [
        ({"type": "image_url", "image_url": {"url": PNG_URL, "detail": "high"}}, "image.png", "image/png", PNG),
        ({"type": "file", "file_url": {"url": "data:text/plain,hello%20you"}}, "file.txt", "text/plain", b"hello you"),
        (
            {"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()}},
            "file.pdf",
            "application/pdf",
            PDF,
        ),
    ],
)
def test_it_decodes_data_urls(part: dict[str, object], name: str, mime: str, data: bytes) -> None:
    blob = parse(messages=[user([part])]).files[0].blob
    assert blob is not None and (blob.name, blob.mime_type, blob.data) == (name, mime, data)


@pytest.mark.parametrize(
    ("filename", "mime"),
    [
        ("a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("a.xyz", "application/octet-stream"),
    ],
)
def test_it_guesses_the_type_of_bare_base64_from_the_name(filename: str, mime: str) -> None:
    data = base64.b64encode(b"abcd").decode().rstrip("=") + "\n"  # unpadded, with a line break
    part = {"type": "file", "file": {"file_data": data, "filename": filename}}
    blob = parse(messages=[user([part])]).files[0].blob
    assert blob is not None and (blob.name, blob.mime_type, blob.data) == (filename, mime, b"abcd")


def test_it_drops_earlier_reasoning() -> None:
    assistant = {"role": "assistant", "content": "<think>\nsecret plan\n</think>\n\nHello", "reasoning_content": "x"}
    request = parse(messages=[user(), assistant, user("again")])
    assert request.messages[1].text == "Hello"


def test_it_keeps_tool_calls_and_results_on_the_messages() -> None:
    call = {"id": "1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        user(),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
    ]
    request = parse(messages=messages)
    assert request.messages[1].text == ""
    assert [(c.id, c.name, c.arguments) for c in request.messages[1].tool_calls] == [
        ("1", "weather", '{"city":"Paris"}')
    ]
    assert (request.messages[2].text, request.messages[2].tool_call_id) == ("sunny", "1")
    # without tools declared the flattened history still shows the call (gateway/openai/flatten.py)
    assert '[called tool weather with {"city":"Paris"}]' in flatten_history(request.messages)


def test_it_reads_the_declared_tools_and_the_choice() -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    request = parse(messages=[user()], tools=[tool], tool_choice="required", parallel_tool_calls=False)
    assert request.tools is not None
    assert [t.name for t in request.tools.offered] == ["weather"]
    assert request.tools.required and not request.tools.parallel
    assert request.ignored == ()


# -- what is refused ---------------------------------------------------------------------------------


def _named(name: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name}}


BAD = [
    ([], "", "invalid_type"),
    ({}, "messages", "missing_required_parameter"),
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": [{"role": "system", "content": "s"}]}, "messages", "invalid_value"),
    ({"messages": [user(), "hi"]}, "messages[1]", "invalid_type"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [user(42)]}, "messages[0].content", "invalid_type"),
    ({"messages": [user([{"type": "text", "text": 1}])]}, "messages[0].content[0].text", "invalid_type"),
    ({"messages": [user([{"type": "input_audio"}])]}, "messages[0].content[0].type", "unsupported_content_type"),
    ({"messages": [user(["text"])]}, "messages[0].content[0]", "invalid_type"),
    (
        {"messages": [user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])]},
        "messages[0].content[0].image_url.url",
        "invalid_url",
    ),
    (
        {"messages": [user([{"type": "image_url", "image_url": "file:///etc/passwd"}])]},
        "messages[0].content[0].image_url",
        "invalid_url",
    ),
    (
        {"messages": [user([{"type": "image_url", "image_url": {}}])]},
        "messages[0].content[0].image_url.url",
        "invalid_type",
    ),
    (
        {"messages": [user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!"}}])]},
        "messages[0].content[0].image_url.url",
        "invalid_url",
    ),
    (
        {"messages": [user([{"type": "file", "file": {"file_id": "file-abc"}}])]},
        "messages[0].content[0].file.file_id",
        "unsupported_parameter",
    ),
    ({"messages": [user()], "model": 4}, "model", "invalid_type"),
    ({"messages": [user()], "model": " "}, "model", "invalid_value"),
    ({"messages": [user()], "stream": "yes"}, "stream", "invalid_type"),
    (
        {"messages": [user()], "stream": True, "stream_options": {"include_usage": 1}},
        "stream_options.include_usage",
        "invalid_type",
    ),
    ({"messages": [user()], "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"messages": [user()], "max_tokens": "10"}, "max_tokens", "invalid_type"),
    ({"messages": [user()], "max_tokens": True}, "max_tokens", "invalid_type"),
    ({"messages": [user()], "max_completion_tokens": 1.5}, "max_completion_tokens", "invalid_type"),
    ({"messages": [user()], "stop": ["a", 1]}, "stop", "invalid_type"),
    ({"messages": [user()], "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"messages": [user()], "n": 2}, "n", "unsupported_value"),
    ({"messages": [user()], "n": 0}, "n", "invalid_value"),
    ({"messages": [user()], "logprobs": True}, "logprobs", "unsupported_value"),
    ({"messages": [user()], "top_logprobs": 3}, "top_logprobs", "unsupported_value"),
    ({"messages": [user()], "temperature": "hot"}, "temperature", "invalid_type"),
    ({"messages": [user()], "tools": {}}, "tools", "invalid_type"),
    (
        {"messages": [user()], "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": _named("b")},
        "tool_choice",
        "invalid_value",
    ),
    (
        {"messages": [user()], "tools": [{"type": "function", "function": {}}]},
        "tools[0].function.name",
        "invalid_value",
    ),
    ({"messages": [user()], "tool_choice": "required"}, "tool_choice", "invalid_value"),
    ({"messages": [user()], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "invalid_type"),
    ({"messages": [user()], "response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    (
        {"messages": [user()], "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}},
        "response_format.json_schema.schema",
        "invalid_value",
    ),
    (
        {"messages": [user(), {"role": "assistant", "content": None, "tool_calls": {}}, user()]},
        "messages[1].tool_calls",
        "invalid_type",
    ),
    (
        {"messages": [user(), {"role": "tool", "content": "x", "tool_call_id": 5}]},
        "messages[1].tool_call_id",
        "invalid_type",
    ),
    ({"messages": [user()], "seed": True}, "seed", "invalid_type"),
    ({"messages": [user()], "user": 5}, "user", "invalid_type"),
    ({"messages": [user()], "conversation_id": "a b"}, "conversation_id", "invalid_value"),
    ({"messages": [user()], "use_search": "true"}, "use_search", "invalid_type"),
    ({"messages": [user()], "reasoning_format": "xml"}, "reasoning_format", "invalid_value"),
    ({"messages": [user()], "reasoning_effort": "max"}, "reasoning_effort", "invalid_value"),
    ({"messages": [user()], "reasoning_effort": 2}, "reasoning_effort", "invalid_type"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD, ids=[f"{p or 'body'}-{c}" for _, p, c in BAD])
def test_it_refuses_with_a_400_naming_the_field(body: object, param: str, code: str) -> None:
    error = refusal(body)
    assert (error.status, error.param or "", error.code) == (400, param, code)
    assert error.message.endswith(".")


def test_it_refuses_too_many_messages() -> None:
    error = refusal({"messages": [user()] * 11})
    assert (error.status, error.param, error.code) == (400, "messages", "too_many_messages")
    assert "10" in error.message


def test_it_counts_parts_over_the_whole_request() -> None:
    parts = [{"type": "text", "text": "x"}] * 5
    error = refusal({"messages": [user(parts), user(parts)]})
    assert (error.status, error.param, error.code) == (400, "messages[1].content", "too_many_parts")


def test_it_refuses_too_many_files_in_the_last_message() -> None:
    images = [{"type": "image_url", "image_url": "https://example.com/a.png"}] * 3
    assert parse(messages=[user(images), {"role": "assistant", "content": "ok"}, user()]).files == ()
    error = refusal({"messages": [user(images)]})
    assert (error.status, error.param, error.code) == (400, "messages[0].content", "too_many_files")


def test_it_refuses_an_oversized_file_with_a_413() -> None:
    big = "data:application/pdf;base64," + base64.b64encode(b"x" * 2000).decode()
    error = refusal({"messages": [user([{"type": "file", "file_url": {"url": big}}])]}, PayloadTooLarge)
    assert (error.status, error.param, error.code) == (413, "messages[0].content[0].file_url.url", "file_too_large")
    # An earlier message's file is not decoded, so its size does not matter.
    assert parse(messages=[user([{"type": "file", "file_url": {"url": big}}]), user()]).files == ()
