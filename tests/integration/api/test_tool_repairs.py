"""Repair turns (gateway/chat/repair.py) through the chat completions API against the fake Kimi: a key
with ``repair_turns`` gets one more upstream turn, in the same chat, when a collected answer's tool
call fails its schema or its JSON output is invalid; without it the answer goes out as it is.
"""

from __future__ import annotations

import json

import openai
import pytest

from accounts.models import Turn
from gateway.models import ApiKey
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import client_for, pool_account, setup_pool
from tests.integration.api.test_tools import ASK, CITY_SCHEMA, TOOLS, WEATHER_CALL, _wait, block, invoke

BAD_CALL = block(invoke("get_weather", days="three"))  # no city, and days is not an integer


def repairing(e2e: object, *, turns: int = 1, protocol: str = "connect") -> openai.OpenAI:
    client, key = setup_pool(e2e, protocol=protocol)
    ApiKey.objects.filter(pk=key.pk).update(repair_turns=turns)
    return client


def only_chat(e2e: object) -> object:
    (chat,) = e2e.fake.chats.values()  # type: ignore[attr-defined]
    return chat


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_a_call_failing_its_schema_gets_one_repair_turn_in_the_same_chat(e2e, protocol):
    client = repairing(e2e, protocol=protocol)
    e2e.fake.reply(text="Checking.\n" + BAD_CALL + "\nSo it is sunny.", chunk_size=5, times=1)
    e2e.fake.reply(text=WEATHER_CALL, chunk_size=5, times=1)

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, tools=TOOLS)

    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris", "days": 3})
    first, second = e2e.fake.prompts()
    assert "# Tools" in first
    assert second.startswith("Your tool call did not match the tool's parameters schema:")
    assert "get_weather" in second and "city" in second and "days" in second  # what failed
    chat = only_chat(e2e)
    users = [m for m in chat.messages if m.role == "user"]
    answers = [m for m in chat.messages if m.role == "assistant"]
    assert len(users) == 2 and users[1].parent_id == answers[0].id  # asked after the answer it repairs
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert (log.outcome, log.repairs, log.tool_outcome, log.tool_calls) == ("ok", 1, "tool_calls", 1)
    assert Turn.objects.filter(request_id=log.request_id).count() == 2  # the extra turn is counted
    _wait(lambda: only_chat(e2e).deleted)


def test_without_repair_turns_the_failing_call_goes_to_the_client(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text=BAD_CALL, chunk_size=5)
    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, tools=TOOLS)
    (call,) = raw.parse().choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"days": "three"}  # passed on: the client reports it
    assert len(e2e.fake.prompts()) == 1
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert (log.repairs, log.tool_outcome) == (0, "tool_calls")
    assert Turn.objects.filter(request_id=log.request_id).count() == 1


def test_a_repaired_call_that_still_fails_is_passed_on_after_the_allowed_turns(e2e):
    client = repairing(e2e, turns=1)
    e2e.fake.reply(text=BAD_CALL, chunk_size=5)  # every answer fails
    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, tools=TOOLS)
    (call,) = raw.parse().choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"days": "three"}
    assert len(e2e.fake.prompts()) == 2
    assert wait_for_final_log(raw.headers["x-request-id"]).repairs == 1


def test_invalid_json_output_gets_a_repair_turn(e2e):
    client = repairing(e2e)
    e2e.fake.reply(text='{"name": "Paris"}', chunk_size=4, times=1)
    e2e.fake.reply(text='{"name": "Paris", "population": 2102650}', chunk_size=4, times=1)

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, response_format=CITY_SCHEMA)

    assert json.loads(raw.parse().choices[0].message.content) == {"name": "Paris", "population": 2102650}
    first, second = e2e.fake.prompts()
    assert second.startswith("Your last answer was not accepted.") and "population" in second
    assert "only the corrected JSON" in second
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert (log.status_code, log.outcome, log.repairs) == (200, "ok", 1)


def test_json_still_invalid_after_the_repair_is_the_502(e2e):
    client = repairing(e2e)
    e2e.fake.reply(text="not json at all", chunk_size=4)
    with pytest.raises(openai.APIError) as caught:
        client.chat.completions.create(model="kimi", messages=ASK, response_format={"type": "json_object"})
    assert caught.value.code == "invalid_json_output"
    assert len(e2e.fake.prompts()) == 2
    (request_id,) = {t.request_id for t in Turn.objects.all()}
    log = wait_for_final_log(request_id)
    assert (log.status_code, log.error_code, log.repairs) == (502, "invalid_json_output", 1)
    _wait(lambda: only_chat(e2e).deleted)


@pytest.mark.parametrize("kind", ["tools", "json"])
def test_a_streamed_answer_is_never_repaired(e2e, kind):
    client = repairing(e2e)
    if kind == "tools":
        e2e.fake.reply(text=BAD_CALL, chunk_size=5)
        chunks = list(client.chat.completions.create(model="kimi", messages=ASK, tools=TOOLS, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    else:
        e2e.fake.reply(text='{"name": "Paris"}', chunk_size=4)
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model="kimi", messages=ASK, response_format=CITY_SCHEMA, stream=True))
    assert len(e2e.fake.prompts()) == 1


def test_a_repaired_answer_leaves_no_chat_for_native_multi_turn(e2e):
    # The chat holds the failing call and the repair message, which the client never saw: continuing it
    # natively would show the model a different conversation than the client's, so it is deleted.
    pool_account(e2e.fake, "native")
    key, raw = make_api_key(native_multiturn=True)
    ApiKey.objects.filter(pk=key.pk).update(repair_turns=1)
    client = client_for(e2e.url, raw)
    e2e.fake.reply(text=BAD_CALL, chunk_size=5, times=1)
    e2e.fake.reply(text=WEATHER_CALL, chunk_size=5, times=1)

    raw_response = client.chat.completions.with_raw_response.create(model="kimi", messages=ASK, tools=TOOLS)

    assert raw_response.parse().choices[0].finish_reason == "tool_calls"
    log = wait_for_final_log(raw_response.headers["x-request-id"])
    assert log.repairs == 1
    _wait(lambda: only_chat(e2e).deleted)
