"""The Responses wire shapes (gateway/responses/): the request parser, the event writer's order and
sequence numbers, the sink over upstream events, and the error wording clients parse."""

from __future__ import annotations

import orjson
import pytest

from gateway.kimi.base import Done, SearchResult, SearchResults, TextDelta, ThinkingDelta
from gateway.openai.errors import InvalidRequest, QuotaExceeded, RateLimitExceeded
from gateway.responses.errors import responses_error
from gateway.responses.request import parse_responses_request
from gateway.responses.sink import ResponsesSink
from gateway.responses.stream import ResponseWriter
from tests.responses_order import assert_official_order

LIMITS = {"max_messages": 50, "max_parts": 50, "max_files": 4}


def parse(body):
    return parse_responses_request(body, **LIMITS)


def test_a_string_input_is_one_user_message_and_instructions_come_first():
    request = parse({"model": "kimi", "input": "hi", "instructions": "Be brief."})
    assert [(m.role, m.text) for m in request.messages] == [("system", "Be brief."), ("user", "hi")]
    assert request.store is True and request.stream is False and not request.probe


def test_items_become_messages_calls_and_results():
    request = parse(
        {
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
                {"role": "user", "content": "q"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "spawn", "namespace": "ns", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "call_id": "c3", "output": [{"type": "input_text", "text": "ok"}]},
            ]
        }
    )
    roles = [m.role for m in request.messages]
    assert roles == ["developer", "user", "assistant", "tool", "assistant", "tool"]
    calls = request.messages[2].tool_calls
    assert [(c.id, c.name, c.kind) for c in calls] == [("c1", "f", "function"), ("c2", "ns.spawn", "function")]
    assert (
        request.messages[4].tool_calls[0].kind == "custom"
        and request.messages[4].tool_calls[0].arguments == "*** Begin Patch"
    )
    assert request.messages[5].text == "ok" and request.messages[5].tool_call_id == "c3"


def test_tools_namespaces_search_and_tool_search():
    request = parse(
        {
            "input": "x",
            "tools": [
                {"type": "function", "name": "f", "parameters": {"type": "object"}},
                {
                    "type": "custom",
                    "name": "apply_patch",
                    "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
                },
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
                {"type": "web_search", "external_web_access": False},
                {"type": "tool_search", "execution": "client", "parameters": {}},
            ],
            "tool_choice": "auto",
        }
    )
    assert request.tools.tools is not None
    assert [t.name for t in request.tools.tools.tools] == ["f", "apply_patch", "ns.g"]
    assert request.tools.tools.tools[1].grammar == "lark: start: x"
    assert not request.model.search and request.tools.dropped == ("web_search_cached", "tool_search")
    assert request.namespaces == frozenset({"ns"})


def test_live_web_search_turns_kimi_search_on():
    request = parse({"input": "x", "tools": [{"type": "web_search", "external_web_access": True}]})
    assert request.model.search and request.tools.tools is None


@pytest.mark.parametrize("kind", ["file_search", "computer_use_preview", "code_interpreter"])
def test_other_hosted_tools_are_refused_naming_them(kind):
    with pytest.raises(InvalidRequest) as caught:
        parse({"input": "x", "tools": [{"type": kind}]})
    assert kind in caught.value.message and caught.value.param == "tools[0].type"


def test_codex_fields_are_accepted():
    request = parse(
        {
            "input": "x",
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "k",
            "client_metadata": {"session_id": "s"},
            "reasoning": {"effort": "medium", "summary": "auto"},
            "text": {"verbosity": "low"},
            "max_output_tokens": 1,
        }
    )
    assert request.store is False and request.reasoning_effort == "high" and request.summary == "summary"
    assert request.probe and request.response_format is None


def test_text_format_json_schema_is_the_structured_output_path():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = parse({"input": "x", "text": {"format": {"type": "json_schema", "name": "out", "schema": schema}}})
    assert request.response_format is not None and request.response_format.name == "out"


def test_an_integral_float_is_an_integer_and_a_fraction_is_refused():
    assert parse({"input": "x", "max_output_tokens": 20.0}).max_output_tokens == 20
    for value in (20.5, True, "20"):
        with pytest.raises(InvalidRequest) as caught:
            parse({"input": "x", "max_output_tokens": value})
        assert caught.value.param == "max_output_tokens" and caught.value.code == "invalid_type"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input"),
        ({"input": "x", "previous_response_id": "nope"}, "previous_response_id"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]}, None),
        ({"input": "x", "background": True}, "background"),
        (  # continuing with tools but nothing after the call: was a 500 (no user message to send)
            {
                "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
                "previous_response_id": "resp_1",
                "tools": [{"type": "function", "name": "f"}],
            },
            "input",
        ),
        ({"input": [{"role": "user", "content": [{"type": {}}]}]}, "input[0].content[0].type"),  # was a 500
    ],
)
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    if param is not None:
        assert caught.value.param == param
    else:
        assert caught.value.param and caught.value.param.startswith("input[0]")


def test_the_writer_numbers_every_event_and_closes_items_in_order():
    writer = ResponseWriter(response_id="resp_1", created_at=1, echo={"model": "kimi"})
    events = writer.begin() + writer.reasoning("think") + writer.text("Hel") + writer.text("lo")
    events += writer.call(call_id="call_1", name="f", arguments="{}", custom=False)
    events += writer.end({"input_tokens": 1, "output_tokens": 2, "total_tokens": 3})
    assert_official_order(events)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert final["status"] == "completed" and [i["type"] for i in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
    ]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert events[2]["item"]["status"] == "in_progress" and events[5]["item"]["status"] == "completed"


def _sink(body, *, stream=True):
    sink = ResponsesSink(
        request_id="r", response_id="resp_x", request=parse({"stream": stream, **body}), prompt_text="hi", tool_nonce=""
    )
    sink.start(chat_id="chat")
    return sink


def _events(frames):
    out = []
    for frame in frames:
        head, data = frame.split(b"\ndata: ", 1)
        event = orjson.loads(data)
        assert head == b"event: " + event["type"].encode()
        out.append(event)
    return out


def test_the_sink_streams_search_citations_and_completes():
    sink = _sink({"input": "weather?", "tools": [{"type": "web_search"}]})
    frames = list(sink.feed(SearchResults((SearchResult(title="W", url="https://w.example"),))))
    frames += sink.feed(TextDelta("Sunny [^1^]."))
    frames += sink.feed(Done())
    frames += sink.close()
    events = _events(frames)
    assert_official_order(events)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.web_search_call.completed" in kinds and "response.output_text.annotation.added" in kinds
    message = next(i for i in events[-1]["response"]["output"] if i["type"] == "message")
    annotation = message["content"][0]["annotations"][0]
    assert message["content"][0]["text"][annotation["start_index"] : annotation["end_index"]] == "[1]"


def test_a_cut_answer_is_incomplete_and_a_failure_is_failed():
    sink = _sink({"input": "x", "max_output_tokens": 3}, stream=False)
    sink.feed(ThinkingDelta(""))
    sink.feed(TextDelta("a very long answer " * 20))
    sink.close()
    response = sink.response()
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}

    sink = _sink({"input": "x"})
    frames = list(sink.feed(TextDelta("part")))
    frames += sink.fail(RateLimitExceeded("No Kimi account can serve this request now (busy).", retry_after=12.5))
    assert_official_order(_events(frames))
    last = _events(frames)[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "rate_limit_exceeded"
    assert last["response"]["error"]["message"].endswith("Please try again in 12.5s.")


def test_an_answer_without_output_still_has_an_empty_message():
    sink = _sink({"input": "x", "max_output_tokens": 1}, stream=False)
    sink.feed(Done())
    sink.close()
    output = sink.response()["output"]
    assert [i["type"] for i in output] == ["message"] and output[0]["content"][0]["text"] == ""


def test_error_codes_clients_parse():
    assert responses_error(RateLimitExceeded("busy.", retry_after=3)).message == "busy. Please try again in 3s."
    quota = QuotaExceeded("budget spent", retry_after=100)
    assert responses_error(quota) is quota and quota.code == "insufficient_quota"
    upstream = RateLimitExceeded("limited", code="upstream_rate_limited", retry_after=None)
    assert responses_error(upstream).code == "rate_limit_exceeded"


def test_whitespace_alone_opens_no_message_before_a_call():
    writer = ResponseWriter(response_id="resp_1", created_at=1, echo={})
    writer.begin()
    writer.text("\n")
    writer.call(call_id="call_1", name="f", arguments="{}", custom=False)
    writer.end({"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
    assert [item["type"] for item in writer.output] == ["function_call"]

    writer = ResponseWriter(response_id="resp_2", created_at=1, echo={})
    writer.text("\n")
    writer.text("Hi [1]")
    writer.annotate(url="https://a", title="A", start=4, end=7)
    (message,) = writer.output
    part = message["content"][0]
    assert part["text"] == "\nHi [1]" and part["text"][part["annotations"][0]["start_index"] :][:3] == "[1]"


def test_the_order_checker_refuses_a_stream_out_of_order():
    writer = ResponseWriter(response_id="resp_1", created_at=1, echo={})
    events = writer.begin() + writer.text("hi") + writer.end({"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
    assert_official_order(events)
    without_item_done = [e for e in events if e["type"] != "response.output_item.done"]
    for n, event in enumerate(without_item_done):
        event["sequence_number"] = n
    with pytest.raises(AssertionError):
        assert_official_order(without_item_done)
    with pytest.raises(AssertionError):
        assert_official_order(events[:-1])  # a bare close: no terminal event


def test_tool_choice_names_a_declared_tool_or_is_refused():
    tools = [{"type": "function", "name": "f"}, {"type": "custom", "name": "apply_patch"}]
    named = parse({"input": "x", "tools": tools, "tool_choice": {"type": "custom", "name": "apply_patch"}})
    assert named.tools.tools is not None and named.tools.tools.choice.names == ("apply_patch",)
    assert named.tools.tools.required
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}
    restricted = parse({"input": "x", "tools": tools, "tool_choice": allowed})
    assert restricted.tools.tools is not None and [t.name for t in restricted.tools.tools.offered] == ["f"]
    with pytest.raises(InvalidRequest) as caught:
        parse({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "g"}})
    assert caught.value.param == "tool_choice"
    with pytest.raises(InvalidRequest):
        parse({"input": "x", "tools": [*tools, {"type": "function", "name": "f"}]})  # declared twice


def test_split_name_gives_the_namespace_back_only_for_declared_namespaces():
    from gateway.responses.tools import split_name

    assert split_name("ns.g", frozenset({"ns"})) == ("g", "ns")
    assert split_name("other.g", frozenset({"ns"})) == ("other.g", None)
    assert split_name("f", frozenset({"ns"})) == ("f", None)
