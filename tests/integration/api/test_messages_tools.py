"""Client tools and the hosted web search through the Messages door, with the official SDK: tool_use
blocks (ids ``toolu_…``) rebuilt by the SDK stream and not, a whole tool loop (tool_use -> tool_result
-> answer), tool_choice, and Kimi's search as server_tool_use / web_search_tool_result with citations."""

from __future__ import annotations

import re

import anthropic
import pytest

from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account
from tests.integration.api.test_tools import WEATHER_CALL, block, invoke

MODEL = "claude-sonnet-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
    "cache_control": {"type": "ephemeral"},
}
CLOCK = {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}
ASK = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
TOOLU_RE = re.compile(r"toolu_[A-Za-z0-9]{24}")


@pytest.fixture
def client(e2e):
    pool_account(e2e.fake, "first")
    _, raw = make_api_key()
    return anthropic.Anthropic(base_url=e2e.url, api_key=raw, max_retries=0, timeout=20)


def answer(client, *, stream: bool, **kwargs: object):
    if stream:
        with client.messages.stream(model=MODEL, max_tokens=1024, **kwargs) as s:
            return s.get_final_message()
    return client.messages.create(model=MODEL, max_tokens=1024, **kwargs)


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_is_a_tool_use_block_after_the_text_before_it(e2e, client, stream):
    e2e.fake.reply(text="Let me check.\n" + WEATHER_CALL + "\nignored trailing text", chunk_size=7)
    message = answer(client, stream=stream, messages=ASK, tools=[WEATHER, CLOCK])
    text, call = message.content
    assert (text.type, text.text.strip()) == ("text", "Let me check.")
    assert call.type == "tool_use" and TOOLU_RE.fullmatch(call.id)
    assert (call.name, call.input) == ("get_weather", {"city": "Paris", "days": 3})
    assert message.stop_reason == "tool_use"
    (prompt,) = e2e.fake.prompts()
    assert '<tool name="get_weather">' in prompt and '<tool name="get_time">' in prompt
    log = wait_for_final_log(wait_latest())
    assert {"tools:2", "tool_outcome:tool_calls", "tool_calls:1"} <= set(log.flags)


def wait_latest() -> str:
    from gateway.models import RequestLog

    return RequestLog.objects.order_by("-id").values_list("request_id", flat=True)[0]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_are_several_blocks_unless_disabled(e2e, client, stream):
    both = block(invoke("get_weather", city="Paris"), invoke("get_time", zone="CET"))
    e2e.fake.reply(text=both)
    message = answer(client, stream=stream, messages=ASK, tools=[WEATHER, CLOCK])
    assert [(b.type, b.name) for b in message.content] == [("tool_use", "get_weather"), ("tool_use", "get_time")]
    assert len({b.id for b in message.content}) == 2

    e2e.fake.reply(text=both)
    message = answer(
        client,
        stream=stream,
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]


def test_a_whole_tool_loop(e2e, client):
    e2e.fake.reply(text=WEATHER_CALL)
    first = client.messages.create(model=MODEL, max_tokens=1024, messages=ASK, tools=[WEATHER])
    (call,) = first.content
    e2e.fake.reply(text="Sunny for three days in Paris.")
    history = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "sunny <b>"}]}
            ],
        },
    ]
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=history, tools=[WEATHER]) as s:
        final = s.get_final_message()
    assert [(b.type, b.text) for b in final.content] == [("text", "Sunny for three days in Paris.")]
    assert final.stop_reason == "end_turn"
    _, second = e2e.fake.prompts()
    # The call is shown in the envelope and the result beside it, escaped.
    assert f'<tool_result call_id="{call.id}" name="get_weather">' in second
    assert "sunny &lt;b&gt;" in second and "<tool_calls" in second
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values()) and len(e2e.fake.chats) == 2


def test_an_error_result_says_so(e2e, client):
    e2e.fake.reply(text="The tool failed.")
    history = [
        *ASK,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "get_weather", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_x", "content": "boom", "is_error": True},
                {"type": "text", "text": "Try again later."},
            ],
        },
    ]
    client.messages.create(model=MODEL, max_tokens=100, messages=history, tools=[WEATHER])
    (prompt,) = e2e.fake.prompts()
    assert "[the tool reported an error]\nboom" in prompt and "Try again later." in prompt


def test_tool_choice_any_requires_a_call(e2e, client):
    e2e.fake.reply(text="I will not call anything.")
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=ASK, tools=[WEATHER], tool_choice={"type": "any"})
    assert caught.value.status_code == 502 and caught.value.body["error"]["type"] == "api_error"


def test_tool_choice_none_offers_no_tool(e2e, client):
    e2e.fake.reply(text=WEATHER_CALL)
    message = client.messages.create(
        model=MODEL, max_tokens=100, messages=ASK, tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert [b.type for b in message.content] == ["text"] and message.stop_reason == "end_turn"
    assert "# Tools" not in e2e.fake.prompts()[0]


def test_tool_choice_naming_an_undeclared_tool_is_a_400(e2e, client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=100, messages=ASK, tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}
        )
    assert "nope" in caught.value.body["error"]["message"]


SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
HITS = [
    {"title": "Paris weather", "url": "https://example.org/paris", "snippet": "Sunny all week.", "site": "ex"},
    {"title": "Forecast", "url": "https://example.org/forecast", "snippet": "Warm.", "site": "ex"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_the_hosted_web_search_is_kimi_search_with_citations(e2e, client, stream):
    e2e.fake.reply(text="It will be sunny [^1^].", search=HITS, chunk_size=5)
    message = answer(client, stream=stream, messages=ASK, tools=[SEARCH_TOOL])
    kinds = [b.type for b in message.content]
    assert kinds[:2] == ["server_tool_use", "web_search_tool_result"] and kinds[-1] == "text"
    use, results = message.content[:2]
    assert use.name == "web_search" and use.input == {"query": "Weather in Paris for 3 days?"}
    assert results.tool_use_id == use.id
    assert [r.url for r in results.content] == ["https://example.org/paris", "https://example.org/forecast"]
    text = "".join(b.text for b in message.content if b.type == "text")
    # The fake cites every hit after the text; no source list is appended (the citations say it).
    assert text == "It will be sunny [1]. [1][2]"
    cited = [c for b in message.content if b.type == "text" for c in (b.citations or [])]
    assert [(c.type, c.url, c.cited_text) for c in cited] == [
        ("web_search_result_location", "https://example.org/paris", "Sunny all week."),
        ("web_search_result_location", "https://example.org/paris", "Sunny all week."),
        ("web_search_result_location", "https://example.org/forecast", "Warm."),
    ]
    assert message.usage.server_tool_use.web_search_requests == 1
    log = wait_for_final_log(wait_latest())
    assert "search" in log.flags
