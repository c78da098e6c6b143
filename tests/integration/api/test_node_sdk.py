"""The official openai Node SDK streams one chat, and rebuilds a streamed tool call, through the gateway
(when Node is present)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.api.helpers import node_script, setup_pool


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    return node_script("stream_chat.mjs", package="openai")


def test_the_node_sdk_streams_a_chat(e2e, node_sdk):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="Hi from the fake, via Node.", chunk_size=4)

    result = subprocess.run(
        ["node", str(node_sdk), f"{e2e.url}/v1", client.api_key], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output == {"text": "Hi from the fake, via Node.", "chunks": output["chunks"], "finish_reason": "stop"}
    assert output["chunks"] >= 7


def test_the_node_sdk_rebuilds_a_streamed_tool_call(e2e, node_sdk):
    client, _ = setup_pool(e2e)
    call = (
        '<tool_calls>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n</invoke>\n</tool_calls>'
    )
    e2e.fake.reply(text="Let me look.\n" + call, chunk_size=5)

    script = node_sdk.parent / "stream_tool_call.mjs"
    result = subprocess.run(
        ["node", str(script), f"{e2e.url}/v1", client.api_key], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["finish_reason"] == "tool_calls" and output["content"].strip() == "Let me look."
    (rebuilt,) = output["tool_calls"]
    assert rebuilt["name"] == "get_weather" and json.loads(rebuilt["arguments"]) == {"city": "Paris"}
    assert rebuilt["id"].startswith("call_")


@pytest.mark.parametrize("tools", [False, True])
def test_the_node_sdk_streams_a_response(e2e, node_sdk, tools):
    client, _ = setup_pool(e2e)
    call = (
        '<tool_calls>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n</invoke>\n</tool_calls>'
    )
    e2e.fake.reply(text=call if tools else "Sunny in Paris.", chunk_size=5)

    script = node_sdk.parent / "stream_response.mjs"
    args = ["node", str(script), f"{e2e.url}/v1", client.api_key, "tools" if tools else "plain"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["status"] == "completed" and output["sequence_ok"]
    assert output["events"][:2] == ["response.created", "response.in_progress"]
    assert output["events"][-1] == "response.completed"
    if tools:
        (rebuilt,) = output["calls"]
        assert rebuilt["name"] == "get_weather" and json.loads(rebuilt["arguments"]) == {"city": "Paris"}
    else:
        assert output["text"] == "Sunny in Paris." and not output["calls"]
