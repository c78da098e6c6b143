"""Claude Code, unmodified, against the live gateway's Messages door (issue 16: "The real CLIs")."""

from __future__ import annotations

import secrets

import pytest

from tests.cli.tool_script import marker_command, shell_call
from tests.fixtures_gateway import wait_for_background_tasks

pytestmark = [pytest.mark.cli, pytest.mark.slow, pytest.mark.timeout(600)]


def assert_one_deleted_chat_per_step(fake, steps: int) -> None:
    wait_for_background_tasks()
    assert fake.count("chat") == steps
    assert len(fake.chats) == steps
    assert all(chat.deleted for chat in fake.chats.values()), "a chat of a stateless Messages call was kept"


def test_claude_code_answers_a_plain_prompt(claude, gateway):
    answer = f"Hello from Kimi through the Messages door, {secrets.token_hex(4)}."
    gateway.fake.reply(text=answer, chunk_size=5)

    run = claude("Say hello to the tests")

    assert run.returncode == 0, run.stderr[-3000:] or run.stdout[-3000:]
    result = run.json()
    assert result["is_error"] is False, result
    assert result["result"] == answer
    assert result["num_turns"] == 1
    (prompt,) = gateway.fake.prompts()
    assert "Say hello to the tests" in prompt
    assert "x-anthropic-billing-header" not in prompt  # the attribution block is dropped
    assert_one_deleted_chat_per_step(gateway.fake, 1)


def test_claude_code_runs_its_bash_tool_and_answers_with_the_output(claude, gateway):
    command, printed = marker_command()
    gateway.fake.reply(text="I will run it.\n" + shell_call("Bash", "command", command), chunk_size=7, times=1)
    gateway.fake.reply(text=f"The command printed {printed}.", chunk_size=5, times=1)

    run = claude(f"Run `{command}` and tell me what it printed", "--allowedTools", "Bash")

    assert run.returncode == 0, run.stderr[-3000:] or run.stdout[-3000:]
    result = run.json()
    assert result["is_error"] is False, result
    assert result["permission_denials"] == []
    assert result["num_turns"] == 2
    assert result["result"].strip() == f"The command printed {printed}."
    first, second = gateway.fake.prompts()
    assert '<tool name="Bash">' in first  # the CLI's tools reached Kimi through the tool core
    assert printed in second and printed not in first  # the real output of the command went back upstream
    assert_one_deleted_chat_per_step(gateway.fake, 2)
