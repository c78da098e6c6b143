"""The OpenAI Agents SDK (openai-agents) runs a function-tool loop over the Responses door (tracing off)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures_gateway import wait_for_background_tasks
from tests.integration.api.helpers import setup_pool
from tests.integration.api.test_tools import block, invoke

agents = pytest.importorskip("agents")


def test_an_agent_calls_a_function_tool_and_answers_with_its_result(e2e):
    from openai import AsyncOpenAI

    client, _ = setup_pool(e2e)
    agents.set_tracing_disabled(True)
    seen: list[str] = []

    @agents.function_tool
    def lucky_number(person: str) -> str:
        """The lucky number of a person."""
        seen.append(person)
        return f"{person}'s lucky number is 7319."

    async def run() -> Any:
        async with AsyncOpenAI(base_url=f"{e2e.url}/v1", api_key=client.api_key, max_retries=0) as openai_client:
            model = agents.OpenAIResponsesModel(model="kimi", openai_client=openai_client)
            agent = agents.Agent(name="helper", instructions="Use tools.", tools=[lucky_number], model=model)
            return await agents.Runner.run(agent, "What is Ada's lucky number?")

    e2e.fake.reply(text=block(invoke("lucky_number", person="Ada")), times=1)
    e2e.fake.reply(text="Ada's lucky number is 7319.", times=1)

    result = asyncio.run(run())

    assert seen == ["Ada"]
    assert result.final_output == "Ada's lucky number is 7319."
    prompts = e2e.fake.prompts()
    assert len(prompts) == 2 and "7319" in prompts[1] and 'name="lucky_number"' in prompts[1]
    wait_for_background_tasks()
