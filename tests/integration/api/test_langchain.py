"""LangChain's ``ChatOpenAI(...).bind_tools`` against the live gateway and the fake Kimi (issue 15): the
framework rebuilds the emulated tool calls from our chat completions, streamed and not, and sends the
results back in the shape the prompt stage renders."""

from __future__ import annotations

import functools
import operator

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from tests.integration.api.helpers import setup_pool
from tests.integration.api.test_tools import TOOLS, WEATHER_CALL, block, invoke


@pytest.fixture(autouse=True)
def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")  # never a call to LangSmith


def chat_model(e2e: object) -> ChatOpenAI:
    client, _ = setup_pool(e2e)
    return ChatOpenAI(
        model="kimi",
        base_url=f"{e2e.url}/v1",
        api_key=client.api_key,
        max_retries=0,
        timeout=20,  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("stream", [False, True])
def test_bind_tools_rebuilds_the_call(e2e, stream):
    model = chat_model(e2e).bind_tools(TOOLS)
    e2e.fake.reply(text="Let me check.\n" + WEATHER_CALL, chunk_size=4)

    if stream:
        chunks = list(model.stream("Weather in Paris for 3 days?"))
        assert len(chunks) > 2
        message = functools.reduce(operator.add, chunks)
    else:
        message = model.invoke("Weather in Paris for 3 days?")

    (call,) = message.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris", "days": 3})
    assert call["id"].startswith("call_")
    assert message.content.strip() == "Let me check."
    assert message.response_metadata.get("finish_reason") == "tool_calls"


def test_bind_tools_parallel_calls_stream(e2e):
    model = chat_model(e2e).bind_tools(TOOLS)
    e2e.fake.reply(text=block(invoke("get_weather", city="Paris"), invoke("get_time", zone="UTC")), chunk_size=3)
    message = functools.reduce(operator.add, model.stream("Weather and time?"))
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "UTC"}),
    ]


def test_the_tool_result_goes_back_and_the_model_answers(e2e):
    model = chat_model(e2e).bind_tools(TOOLS)
    e2e.fake.reply(text=WEATHER_CALL, chunk_size=4, times=1)
    e2e.fake.reply(text="Sunny, 25C, for three days.", chunk_size=4, times=1)
    question = HumanMessage("Weather in Paris for 3 days?")
    called = model.invoke([question])
    assert isinstance(called, AIMessage) and called.tool_calls
    result = ToolMessage("sunny, 25C", tool_call_id=called.tool_calls[0]["id"])

    answer = model.invoke([question, called, result])

    assert answer.content == "Sunny, 25C, for three days." and not answer.tool_calls
    second = e2e.fake.prompts()[1]
    assert f'<tool_result call_id="{called.tool_calls[0]["id"]}" name="get_weather">' in second
    assert "sunny, 25C" in second
