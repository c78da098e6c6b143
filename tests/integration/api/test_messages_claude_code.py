"""What Claude Code 2.1.332 really sends (captured by tests/cli/capture_server.py into
tests/fixtures/cli/claude_*.json), replayed through the Messages door with its own headers: the
billing-header system block, a ``role: system`` message after the first user message, 12 custom tools
(``$schema``, ``defer_loading``), adaptive thinking with ``display: omitted``, ``context_management``,
``output_config``, a JSON-string ``metadata.user_id``, ``?beta=true`` with its beta list, Bearer auth,
``accept: application/json`` on a stream, and the tool loop's ``tool_use`` / ``tool_result`` history."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx
import pytest

from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account
from tests.integration.api.test_tools import block, invoke

FIXTURES = pathlib.Path(__file__).parents[2] / "fixtures" / "cli"
DROPPED_HEADERS = {"authorization", "host", "content-length", "connection", "accept-encoding"}
OFFICIAL = ["message_start", "content_block_start", "content_block_delta", "content_block_stop"]


def captured(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["requests"]


def replay(e2e: Any, raw_key: str, request: dict[str, Any]) -> httpx.Response:
    headers = {k: v for k, v in request["headers"].items() if k not in DROPPED_HEADERS}
    headers["authorization"] = f"Bearer {raw_key}"
    return httpx.post(f"{e2e.url}{request['path']}?beta=true", json=request["body"], headers=headers, timeout=30)


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def assert_official_order(got: list[tuple[str, dict[str, Any]]]) -> None:
    names = [name for name, _ in got if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    open_index = None
    for name, data in got[1:-2]:
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None


@pytest.fixture
def gateway(e2e):
    pool_account(e2e.fake, "first")
    _, e2e.raw = make_api_key()
    return e2e


def test_claude_codes_plain_prompt(gateway):
    (request,) = captured("claude_plain")
    gateway.fake.reply(text="Hello from Kimi.", thinking="Greet back.", chunk_size=4)
    response = replay(gateway, gateway.raw, request)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    got = events(response)
    assert_official_order(got)
    started = got[0][1]["message"]
    assert started["model"] == "claude-opus-5-5" and started["usage"]["input_tokens"] > 1000
    blocks = [data["content_block"]["type"] for name, data in got if name == "content_block_start"]
    assert blocks == ["thinking", "text"]  # adaptive thinking, display omitted: no thinking_delta
    deltas = {data["delta"]["type"] for name, data in got if name == "content_block_delta"}
    assert deltas == {"signature_delta", "text_delta"}
    assert "".join(d["delta"].get("text", "") for n, d in got if n == "content_block_delta") == "Hello from Kimi."
    assert got[-2][1]["delta"]["stop_reason"] == "end_turn"

    (prompt,) = gateway.fake.prompts()
    assert "x-anthropic-billing-header" not in prompt
    assert "# Environment" in prompt  # the role: system message after the first user message
    assert '<tool name="Bash">' in prompt and '<tool name="DeferredToolPlaceholder">' in prompt
    assert prompt.rstrip().endswith("otherwise answer normally in plain text.)")
    log = wait_for_final_log(response.headers["request-id"])
    assert (log.path, log.outcome, log.model) == ("/v1/messages", "ok", "claude-opus-5-5")
    assert {"thinking", "effort:high", "tools:12"} <= set(log.flags)  # output_config.effort: medium


def test_claude_codes_tool_loop(gateway):
    first, second = captured("claude_tool_loop")
    gateway.fake.reply(text=block(invoke("Bash", command="echo capture-marker-4711", description="Print it")))
    response = replay(gateway, gateway.raw, first)
    got = events(response)
    assert_official_order(got)
    (start,) = [
        d["content_block"] for n, d in got if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    assert start["name"] == "Bash" and start["id"].startswith("toolu_")
    partial = "".join(
        d["delta"]["partial_json"]
        for n, d in got
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"command": "echo capture-marker-4711", "description": "Print it"}
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"

    gateway.fake.reply(text="The command printed capture-marker-4711.")
    response = replay(gateway, gateway.raw, second)
    got = events(response)
    assert_official_order(got)
    assert got[-2][1]["delta"]["stop_reason"] == "end_turn"
    _, prompt = gateway.fake.prompts()
    (call_id,) = [b["id"] for m in second["body"]["messages"] if m["role"] == "assistant" for b in m["content"]]
    assert f'<tool_result call_id="{call_id}" name="Bash">' in prompt and "capture-marker-4711" in prompt
    wait_for_background_tasks()
    assert len(gateway.fake.chats) == 2 and all(chat.deleted for chat in gateway.fake.chats.values())


def test_its_own_thinking_comes_back_in_the_history_and_is_accepted(gateway):
    (request,) = captured("claude_thinking_echo")
    gateway.fake.reply(text="done")
    response = replay(gateway, gateway.raw, request)
    assert response.status_code == 200
    assert_official_order(events(response))
    (prompt,) = gateway.fake.prompts()
    thought = [
        b["thinking"]
        for m in request["body"]["messages"]
        if m["role"] == "assistant"
        for b in m["content"]
        if b["type"] == "thinking"
    ]
    assert thought and all(t not in prompt for t in thought if t)  # earlier reasoning is not sent back


def test_its_non_streaming_fallback_gets_a_json_message(gateway):
    (request,) = captured("claude_plain")
    body = {**request["body"], "stream": False, "max_tokens": 64000}
    gateway.fake.reply(text="Fallback answer.")
    response = replay(gateway, gateway.raw, {**request, "body": body})
    message = response.json()
    assert message["type"] == "message" and message["content"][-1] == {"type": "text", "text": "Fallback answer."}
