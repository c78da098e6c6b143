"""Client tools over the Responses door: a function-tool loop with the openai SDK, a custom (freeform)
tool, a namespaced tool, and what Codex 0.171.0 really sends (tests/fixtures/cli/codex_*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account, setup_pool
from tests.integration.api.test_responses import sse_events
from tests.integration.api.test_tools import block, invoke
from tests.responses_order import assert_official_order

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cli"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files."}
AGENTS = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
        }
    ],
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello <world> & more\n*** End Patch"


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_loop(e2e, stream):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="Let me check.\n" + block(invoke("get_weather", city="Paris")))
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.responses.stream(model="kimi", input=ask, tools=[WEATHER], store=False) as s:
            events = list(s)
            first = s.get_final_response()
        assert_official_order(events)
        kinds = [e.type for e in events]
        assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    else:
        first = client.responses.create(model="kimi", input=ask, tools=[WEATHER], store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id.startswith("call_") and first.status == "completed"
    assert first.output[0].type == "message" and first.output_text.strip() == "Let me check."

    e2e.fake.reply(text="Sunny, 21 degrees.")
    history = [*ask, *[item.model_dump(exclude_none=True) for item in first.output]]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"})
    second = client.responses.create(model="kimi", input=history, tools=[WEATHER], store=False)
    assert second.output_text == "Sunny, 21 degrees."
    prompt = e2e.fake.prompts()[-1]
    assert "sunny, 21C" in prompt and 'name="get_weather"' in prompt  # the result, beside its call
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())


@pytest.mark.parametrize("stream", [False, True])
def test_a_custom_tool_is_answered_with_its_raw_input(e2e, stream):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text=block(invoke("apply_patch", input=f"<![CDATA[{PATCH}]]>")))
    ask = "Create hello.txt"
    if stream:
        with client.responses.stream(model="kimi", input=ask, tools=[APPLY_PATCH], store=False) as s:
            events = list(s)
            response = s.get_final_response()
        assert_official_order(events)
        kinds = [e.type for e in events]
        assert "response.custom_tool_call_input.done" in kinds
    else:
        response = client.responses.create(model="kimi", input=ask, tools=[APPLY_PATCH], store=False)
    calls = [item for item in response.output if item.type == "custom_tool_call"]
    assert len(calls) == 1 and calls[0].name == "apply_patch" and calls[0].input == PATCH
    # It comes back in the history as Codex sends it, and the model reads its output beside it.
    e2e.fake.reply(text="Done.")
    history = [
        {"role": "user", "content": ask},
        calls[0].model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": calls[0].call_id, "output": "Success."},
    ]
    client.responses.create(model="kimi", input=history, tools=[APPLY_PATCH], store=False)
    prompt = e2e.fake.prompts()[-1]
    assert "Success." in prompt and "&lt;world&gt;" in prompt  # the call's input is escaped upstream


def test_a_namespaced_tool_is_called_back_in_its_namespace(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text=block(invoke("multi_agent_v1.spawn_agent", task="lint")))
    response = client.responses.create(model="kimi", input="Spawn a linter", tools=[AGENTS], store=False)
    call = next(item for item in response.output if item.type == "function_call")
    assert (call.name, call.namespace, json.loads(call.arguments)) == (
        "spawn_agent",
        "multi_agent_v1",
        {"task": "lint"},
    )
    assert "multi_agent_v1.spawn_agent" in e2e.fake.prompts()[-1]


def _codex(name: str) -> list[dict[str, object]]:
    return [r["body"] for r in json.loads((FIXTURES / name).read_text())["requests"]]


def _post(e2e, key: str, body: dict[str, object]) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {key}",
        "accept": "text/event-stream",
        "session-id": "s",
        "originator": "codex_exec",
    }
    return httpx.post(f"{e2e.url}/v1/responses", json=body, headers=headers, timeout=20)


@pytest.mark.skipif(not (FIXTURES / "codex_tool_loop.json").exists(), reason="the Codex captures are not merged yet")
def test_what_codex_sends_in_a_tool_loop_is_served(e2e):
    client, _ = setup_pool(e2e)
    first, second = _codex("codex_tool_loop.json")[:2]
    e2e.fake.reply(text=block(invoke("exec_command", cmd="echo 7319")))
    response = _post(e2e, client.api_key, first)
    events = sse_events(response)
    assert_official_order(events)
    assert (response.status_code, events[-1]["type"]) == (200, "response.completed")
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    call = next(item for item in done if item["type"] == "function_call")
    assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": "echo 7319"}
    assert events[-1]["response"]["usage"]["total_tokens"] > 0

    e2e.fake.reply(text="The command printed 7319.")
    response = _post(e2e, client.api_key, second)
    events = sse_events(response)
    assert_official_order(events)
    assert events[-1]["type"] == "response.completed"
    assert "The command printed 7319." in json.dumps(events[-1]["response"]["output"])
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.outcome == "ok"
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())  # Codex sends store: false


@pytest.mark.skipif(not (FIXTURES / "codex_known_model.json").exists(), reason="the Codex captures are not merged yet")
def test_codex_with_a_gpt_model_name_is_served_too(e2e):
    """apply_patch as a grammar custom tool and the tool_search tool: accepted, not a 400."""
    client, _ = setup_pool(e2e)
    body = _codex("codex_known_model.json")[0]
    e2e.fake.reply(text="hello")
    response = _post(e2e, client.api_key, body)
    events = sse_events(response)
    assert_official_order(events)
    assert (response.status_code, events[-1]["type"]) == (200, "response.completed")


@pytest.mark.skipif(not (FIXTURES / "codex_plain.json").exists(), reason="the Codex captures are not merged yet")
def test_codex_plain_prompt_is_answered_and_logged(e2e):
    client, _ = setup_pool(e2e)
    body = _codex("codex_plain.json")[0]
    e2e.fake.reply(text="Hello there.")
    response = _post(e2e, client.api_key, body)
    events = sse_events(response)
    assert_official_order(events)
    final = events[-1]
    assert final["type"] == "response.completed" and final["response"]["store"] is False
    texts = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert texts == ["Hello there."]
    prompt = e2e.fake.prompts()[-1]
    assert prompt.startswith("You are a coding agent running in the Codex CLI")  # developer items first
    assert "Latest message from user (answer this one):\nSay hello" in prompt
    assert '<tool name="exec_command">' in prompt and '<tool name="multi_agent_v1.spawn_agent">' in prompt
    log = wait_for_final_log(response.headers["x-request-id"])
    assert {"store:false", "tool_dropped:web_search_cached"} <= set(log.flags)
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())


@pytest.mark.skipif(not (FIXTURES / "codex_tool_loop.json").exists(), reason="the Codex captures are not merged yet")
def test_a_codex_tool_loop_continues_one_chat_natively(e2e):
    """Native multi-turn (gateway/chat/native.py) on this door: Codex resends the whole history with
    store:false; the second step continues the first step's chat with only the tool output."""
    pool_account(e2e.fake, "native")
    _, raw = make_api_key(native_multiturn=True)
    first, second = _codex("codex_tool_loop.json")[:2]
    e2e.fake.reply(text=block(invoke("exec_command", cmd="echo 7319")), times=1)
    events = sse_events(_post(e2e, raw, first))
    call = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert call["type"] == "function_call"
    wait_for_background_tasks()
    # The second step as Codex sends it, with this run's call echoed (the capture holds another run's ids).
    items = []
    for item in second["input"]:
        if item.get("type") == "function_call":
            item = {**item, "call_id": call["call_id"], "id": call["id"], "arguments": call["arguments"]}
        elif item.get("type") == "function_call_output":
            item = {**item, "call_id": call["call_id"], "output": "Process exited with code 0\nOutput:\n7319\n"}
        items.append(item)
    e2e.fake.reply(text="It printed 7319.", times=1)
    response = _post(e2e, raw, {**second, "input": items})
    events = sse_events(response)
    assert events[-1]["type"] == "response.completed"
    log = wait_for_final_log(response.headers["x-request-id"])
    assert "native" in log.flags
    (chat,) = e2e.fake.chats.values()  # one chat for both steps
    last = e2e.fake.prompts()[-1]
    assert "7319" in last and "You are a coding agent" not in last  # only what followed the call
    assert len([m for m in chat.messages if m.role == "user"]) == 2


@pytest.mark.skipif(not (FIXTURES / "codex_reasoning_search_echo.json").exists(), reason="no capture")
def test_codex_resending_reasoning_and_search_items_with_nulls_is_served(e2e):
    client, _ = setup_pool(e2e)
    resumed = _codex("codex_reasoning_search_echo.json")[1]
    e2e.fake.reply(text="Resumed.", citations=None)
    response = _post(e2e, client.api_key, resumed)
    events = sse_events(response)
    assert_official_order(events)
    assert events[-1]["type"] == "response.completed"
    prompt = e2e.fake.prompts()[-1]
    assert "encrypted_content" not in prompt  # the reasoning item is dropped, never sent back upstream


@pytest.mark.parametrize("stream", [False, True])
def test_what_the_model_writes_after_a_call_is_drained_and_logged_not_sent(e2e, stream):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text=block(invoke("get_weather", city="Oslo")) + "\nIt is 3 C in Oslo (invented).")
    body = {"model": "kimi", "input": "Weather in Oslo?", "tools": [WEATHER], "store": False, "stream": stream}
    raw = httpx.post(f"{e2e.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {client.api_key}"})
    assert raw.status_code == 200 and "get_weather" in raw.text and "invented" not in raw.text
    log = wait_for_final_log(raw.headers["x-request-id"])
    wait_for_background_tasks()
    assert (log.tools_declared, log.tool_block_seen, log.tool_outcome, log.tool_calls) == (1, True, "tool_calls", 1)
    assert f"trailing_after_tool:{len(chr(10) + 'It is 3 C in Oslo (invented).')}" in log.flags
    assert all(chat.deleted for chat in e2e.fake.chats.values())
