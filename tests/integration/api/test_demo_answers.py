"""The fake's demo mode (make demo) through the gateway: each feature answered in character, for both
protocols; scripted replies still win (gateway/kimi/fake/demo.py)."""

from __future__ import annotations

import json

import pytest

from tests.integration.api.helpers import setup_pool

PROTOCOLS = ["connect", "legacy"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def demo(e2e):  # type: ignore[no-untyped-def]
    e2e.fake.configure(demo=True)
    return e2e


def ask(client, content, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("model", "kimi")
    return client.chat.completions.create(messages=[{"role": "user", "content": content}], **kwargs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_plain_question_is_echoed_with_what_to_try_next(demo, protocol):
    client, _ = setup_pool(demo, protocol=protocol)
    content = ask(client, "What can you do?").choices[0].message.content
    assert content.startswith("You asked: “What can you do?”") and "kimi-search" in content


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_search_model_gets_results_about_the_question_with_citations(demo, protocol):
    client, _ = setup_pool(demo, protocol=protocol)
    message = ask(client, "tides of the Atlantic", model="kimi-search").choices[0].message
    assert "tides of the Atlantic" in message.content
    titles = [a.url_citation.title for a in message.annotations]
    assert titles and all("tides of the Atlantic" in t for t in titles)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_thinking_model_reasons_about_the_question(demo, protocol):
    client, _ = setup_pool(demo, protocol=protocol)
    message = ask(client, "Is 91 prime?", model="kimi-thinking").choices[0].message
    assert "Is 91 prime?" in message.model_extra["reasoning_content"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_declared_tool_is_called_when_asked_and_its_result_reported(demo, protocol):
    client, _ = setup_pool(demo, protocol=protocol)
    question = [{"role": "user", "content": 'Use get_weather for "Lyon", please.'}]
    first = client.chat.completions.create(model="kimi", messages=question, tools=[WEATHER]).choices[0]
    assert first.finish_reason == "tool_calls"
    call = first.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Lyon"})
    history = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Rain, 12 °C"},
    ]
    second = client.chat.completions.create(model="kimi", messages=history, tools=[WEATHER]).choices[0]
    assert second.finish_reason == "stop" and "Rain, 12 °C" in second.message.content


def test_a_question_that_asks_for_no_tool_gets_text_although_tools_are_declared(demo):
    client, _ = setup_pool(demo)
    choice = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "Tell me a joke."}], tools=[WEATHER]
    ).choices[0]
    assert choice.finish_reason == "stop" and choice.message.content.startswith("You asked")


def test_a_scripted_reply_wins_over_the_demo(demo):
    client, _ = setup_pool(demo)
    demo.fake.reply(text="scripted")
    assert ask(client, "Use get_weather", tools=[WEATHER]).choices[0].message.content == "scripted"
