"""The Messages request body -> MessagesRequest (gateway/anthropic/request.py, content.py, tools.py)."""

from __future__ import annotations

import base64

import pytest

from gateway.anthropic.content import ContentLimits
from gateway.anthropic.request import parse_messages_request
from gateway.anthropic.tools import new_tool_use_id, parse_anthropic_tools
from gateway.openai.errors import InvalidRequest, PayloadTooLarge

LIMITS = ContentLimits(max_parts=100, max_file_bytes=1000)
ASK = [{"role": "user", "content": "hi"}]


def parse(**body: object):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": ASK, **body}
    return parse_messages_request(body, limits=LIMITS, max_messages=50, max_files=2)


def test_the_minimal_request():
    request = parse()
    assert [(m.role, m.text) for m in request.messages] == [("user", "hi")]
    assert request.model.requested == "claude-sonnet-4-5" and request.model.unknown
    assert (request.max_tokens, request.stream, request.tools, request.thinking) == (100, False, None, None)
    assert not request.probe


@pytest.mark.parametrize(
    "body, param",
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"model": None}, "model"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"stream": "yes"}, "stream"),
        ({"stop_sequences": "STOP"}, "stop_sequences"),
        ({"thinking": {"type": "sometimes"}}, "thinking"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages.0.content.0.source.file_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "ftp://x"}}]}
                ]
            },
            "messages.0.content.0.source.url",
        ),
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema"),
        ({"tools": [{"name": "bad name", "input_schema": {}}]}, "tools.0.name"),
        ({"tools": [{"type": "computer_20250124", "name": "computer"}]}, "tools.0.type"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_bad_fields_are_refused_naming_them(body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(**body)
    assert caught.value.param == param and caught.value.status == 400


@pytest.mark.parametrize(("value", "taken"), [(20, 20), (20.0, 20), (1.0, 1)])
def test_max_tokens_is_an_integer_as_json_schema_says(value, taken):
    assert parse(max_tokens=value).max_tokens == taken


@pytest.mark.parametrize("value", [20.5, 0, -1, True, "20"])
def test_max_tokens_that_is_no_positive_integer_is_refused(value):
    with pytest.raises(InvalidRequest) as caught:
        parse(max_tokens=value)
    assert caught.value.param == "max_tokens"


def test_max_tokens_1_is_a_probe_and_count_tokens_needs_none():
    assert parse(max_tokens=1).probe
    counted = parse_messages_request(
        {"model": "m", "messages": ASK}, limits=LIMITS, max_messages=50, max_files=2, counting=True
    )
    assert counted.max_tokens is None and not counted.probe


def test_system_blocks_drop_the_billing_header_and_system_messages_stay_where_they_are():
    request = parse(
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cc_entrypoint=cli;"},
            {"type": "text", "text": "Be useful.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[{"role": "user", "content": "q"}, {"role": "system", "content": [{"type": "text", "text": "env"}]}],
    )
    assert [(m.role, m.text) for m in request.messages] == [("system", "Be useful."), ("user", "q"), ("system", "env")]


def test_tool_use_and_tool_result_become_calls_and_tool_messages():
    request = parse(
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "whatever"},
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "cache_control": {}},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "denied"}],
                    },
                    {"type": "text", "text": "go on"},
                ],
            },
        ]
    )
    user, assistant, first, second, last = request.messages
    assert (assistant.role, assistant.text) == ("assistant", "checking")
    (call,) = assistant.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_1", "Bash", '{"command": "ls"}')
    assert (first.role, first.tool_call_id, first.text) == ("tool", "toolu_1", "a.txt")
    assert (second.tool_call_id, second.text) == ("toolu_2", "[the tool reported an error]\ndenied")
    assert (last.role, last.text) == ("user", "go on")


def test_only_the_last_user_messages_files_are_decoded():
    png = base64.b64encode(b"\x89PNG fake").decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    request = parse(
        messages=[
            {"role": "user", "content": [image]},
            {"role": "assistant", "content": "seen"},
            {"role": "user", "content": [image, {"type": "text", "text": "again"}]},
        ]
    )
    (file,) = request.files
    assert file.blob is not None and file.blob.data == b"\x89PNG fake" and file.blob.mime_type == "image/png"
    assert request.messages[0].attachments[0].blob is None  # an earlier one keeps its label only


def test_a_file_above_the_limit_is_413():
    data = base64.b64encode(b"x" * 2000).decode()
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
    with pytest.raises(PayloadTooLarge):
        parse(messages=[{"role": "user", "content": [doc]}])


@pytest.mark.parametrize(
    "thinking, output_config, model, expected",
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "claude-x", ("summarized", "low")),
        ({"type": "enabled", "budget_tokens": 20000}, None, "claude-x", ("summarized", "high")),
        ({"type": "adaptive", "display": "omitted"}, {"effort": "medium"}, "claude-x", ("omitted", "high")),
        ({"type": "adaptive"}, {"effort": "low"}, "claude-x", ("summarized", "low")),
        (None, None, "kimi-thinking", ("summarized", None)),
        ({"type": "disabled"}, None, "kimi-thinking", (None, None)),
        (None, None, "claude-x", (None, None)),
    ],
)
def test_thinking_and_its_effort(thinking, output_config, model, expected):
    body = {"thinking": thinking} if thinking else {}
    if output_config:
        body["output_config"] = output_config
    request = parse(model=model, **body)
    assert (request.thinking, request.reasoning_effort) == expected
    assert request.model.thinking == (expected[0] is not None or model == "kimi-thinking")


def test_tools_and_tool_choice():
    body = {
        "tools": [
            {
                "name": "Bash",
                "input_schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                },
            },
            {"name": "DeferredToolPlaceholder", "input_schema": {}, "defer_loading": True},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        ],
        "tool_choice": {"type": "tool", "name": "Bash", "disable_parallel_tool_use": True},
    }
    parsed = parse_anthropic_tools(body)
    assert parsed.web_search and parsed.tools is not None
    assert [t.name for t in parsed.tools.tools] == ["Bash", "DeferredToolPlaceholder"]
    assert (parsed.tools.choice.mode, parsed.tools.choice.names, parsed.tools.parallel) == ("named", ("Bash",), False)
    assert parse_anthropic_tools({"tool_choice": {"type": "any"}, "tools": body["tools"][:1]}).tools.required
    request = parse(**body)
    assert request.model.search and request.search_query == "hi"


def test_tool_use_ids_look_like_anthropics():
    ids = {new_tool_use_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("toolu_") and len(i) == 30 and i[6:].isalnum() for i in ids)


def test_unknown_fields_and_blocks_are_accepted():
    request = parse(
        temperature=0.5,
        top_k=3,
        metadata={"user_id": '{"session_id": "s"}'},
        context_management={"edits": []},
        messages=[{"role": "user", "content": [{"type": "future_block", "text": "kept"}, {"type": "mystery"}]}],
    )
    assert request.messages[0].text == "kept\n[mystery block]"
    assert {"temperature", "top_k", "metadata", "context_management"} <= set(request.ignored)
    assert request.user == "session:s"  # Claude Code's JSON user_id: its session id is logged
    assert parse(metadata={"user_id": "alice"}).user == "alice"


def test_tool_choice_may_name_the_hosted_search():
    search = {"type": "web_search_20250305", "name": "web_search"}
    for choice in ({"type": "tool", "name": "web_search"}, {"type": "any"}):
        parsed = parse_anthropic_tools({"tools": [search], "tool_choice": choice})
        assert parsed.web_search and parsed.tools is None
    with_own = parse_anthropic_tools(
        {"tools": [search, {"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "web_search"}}
    )
    assert with_own.tools is not None and with_own.tools.choice.mode == "auto"


def test_an_image_a_tool_returned_is_one_of_the_files_and_the_result_stays_the_turn():
    png = base64.b64encode(b"\x89PNG shot").decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    request = parse(
        messages=[
            *ASK,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}]},
        ]
    )
    assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[-1].text == "[image: inline image]"
    (file,) = request.files
    assert file.blob is not None and file.blob.data == b"\x89PNG shot"


def test_a_tool_choice_name_that_is_not_a_string_is_a_400_not_a_500():
    # Found by the conformance test: the name was looked up among the hosted tools' names (unhashable).
    hosted = {"type": "web_search_20250305", "name": "web_search"}
    body = {"tools": [hosted], "tool_choice": {"type": "tool", "name": {}}}
    with pytest.raises(InvalidRequest) as info:
        parse_anthropic_tools(body)
    assert info.value.param == "tool_choice"
