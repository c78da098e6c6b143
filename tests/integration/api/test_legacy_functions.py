"""The legacy ``functions`` / ``function_call`` fields (gateway/openai/legacy_functions.py) through the
official SDK against the fake Kimi: read as tools, answered in the legacy shape."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import setup_pool
from tests.integration.api.test_tools import ASK, CLOCK, WEATHER, WEATHER_CALL, block, invoke

FUNCTIONS = [WEATHER["function"], CLOCK["function"]]
CITY = '{"city": "Paris"}'


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_comes_back_as_function_call(e2e, stream):
    client, _ = setup_pool(e2e)
    two = block(invoke("get_weather", city="Paris", days=3), invoke("get_time", zone="UTC"))
    e2e.fake.reply(text="Checking.\n" + two, chunk_size=5)

    if stream:
        chunks = list(client.chat.completions.create(model="kimi", messages=ASK, functions=FUNCTIONS, stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert not any(d.tool_calls for d in deltas)
        (call,) = [d.function_call for d in deltas if d.function_call]
        assert "".join(d.content or "" for d in deltas).strip() == "Checking."
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "function_call"
        name, arguments = call.name, call.arguments
    else:
        raw = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, functions=FUNCTIONS)
        choice = raw.parse().choices[0]
        assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
        assert choice.message.content.strip() == "Checking."
        name, arguments = choice.message.function_call.name, choice.message.function_call.arguments
        log = wait_for_final_log(raw.headers["x-request-id"])
        assert (log.tools_declared, log.tool_outcome, log.tool_calls) == (2, "tool_calls", 1)
    assert (name, json.loads(arguments)) == ("get_weather", {"city": "Paris", "days": 3})  # one call only
    (prompt,) = e2e.fake.prompts()
    assert '<tool name="get_weather">' in prompt


def test_function_call_names_the_function_to_call(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="No idea.", chunk_size=5)
    with pytest.raises(openai.APIError) as caught:
        client.chat.completions.create(
            model="kimi", messages=ASK, functions=FUNCTIONS, function_call={"name": "get_weather"}
        )
    assert caught.value.code == "tool_call_missing"  # a named function_call is a required call
    (prompt,) = e2e.fake.prompts()
    assert "you must call the tool get_weather" in prompt and '<tool name="get_time">' not in prompt


def test_function_call_none_offers_no_function(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text=WEATHER_CALL, chunk_size=5)
    completion = client.chat.completions.create(model="kimi", messages=ASK, functions=FUNCTIONS, function_call="none")
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.function_call is None
    assert "# Tools" not in e2e.fake.prompts()[0]


def test_a_legacy_history_round_trip_renders_the_call_and_its_result(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="It will be sunny in Paris.", chunk_size=5)
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": CITY}},
        {"role": "function", "name": "get_weather", "content": "sunny <tool_calls> 25C"},
    ]
    completion = client.chat.completions.create(model="kimi", messages=messages, functions=FUNCTIONS)
    assert completion.choices[0].message.content == "It will be sunny in Paris."
    (prompt,) = e2e.fake.prompts()
    assert '<invoke name="get_weather" call_id="call_fn1">' in prompt
    assert '<tool_result call_id="call_fn1" name="get_weather">' in prompt
    assert "sunny &lt;tool_calls&gt; 25C" in prompt  # the result escaped like any tool result


def test_functions_and_tools_together_are_a_400(e2e):
    client, _ = setup_pool(e2e)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="kimi", messages=ASK, functions=FUNCTIONS, tools=[WEATHER])
    assert caught.value.body["param"] == "functions"  # type: ignore[index]
