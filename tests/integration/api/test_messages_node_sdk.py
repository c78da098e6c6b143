"""The official @anthropic-ai/sdk (Node) streams a Messages answer with thinking and a tool call through
the gateway and rebuilds its blocks, and counts tokens (when Node is present; tests/node/)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.factories import make_api_key
from tests.integration.api.helpers import node_script, pool_account
from tests.integration.api.test_tools import WEATHER_CALL


@pytest.fixture(scope="module")
def script() -> Path:
    return node_script("stream_messages.mjs", package="@anthropic-ai/sdk")


def test_the_node_sdk_rebuilds_thinking_and_a_tool_use(e2e, script):
    pool_account(e2e.fake, "first")
    _, raw = make_api_key()
    e2e.fake.reply(text="Let me look.\n" + WEATHER_CALL, thinking="A tool knows.", chunk_size=5)

    result = subprocess.run(["node", str(script), e2e.url, raw], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    thinking, text, call = output["blocks"]
    assert (thinking["type"], thinking["thinking"]) == ("thinking", "A tool knows.") and thinking["signature"]
    assert (text["type"], text["text"].strip()) == ("text", "Let me look.")
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_")
    assert (call["name"], call["input"]) == ("get_weather", {"city": "Paris", "days": 3})
    assert output["stop_reason"] == "tool_use" and output["input_tokens"] > 0 and output["events"] >= 8
    assert len(e2e.fake.prompts()) == 1  # count_tokens did not reach Kimi
