"""Codex CLI, unmodified, against the live gateway's Responses door (issue 16: "The real CLIs")."""

from __future__ import annotations

import secrets

import pytest

from tests.cli.tool_script import marker_command, shell_call
from tests.fixtures_gateway import wait_for_background_tasks

pytestmark = [pytest.mark.cli, pytest.mark.slow, pytest.mark.timeout(600)]


def assert_one_deleted_chat_per_step(fake, steps: int) -> None:
    wait_for_background_tasks()
    assert fake.count("chat") == steps  # a stream without response.completed would show as retries here
    assert len(fake.chats) == steps
    assert all(chat.deleted for chat in fake.chats.values()), "a chat of a store:false response was kept"


def test_codex_answers_a_plain_prompt(codex, gateway):
    answer = f"Hello from Kimi through the Responses door, {secrets.token_hex(4)}."
    # Codex run with full access declares live web search, which turns Kimi's search on for the turn: the
    # fake then returns search results, and would cite them in the text unless told not to.
    gateway.fake.reply(text=answer, chunk_size=5, citations=None)

    run = codex("Say hello to the tests")

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == answer
    assert codex.last_message.strip() == answer
    (prompt,) = gateway.fake.prompts()
    assert "Say hello to the tests" in prompt
    assert_one_deleted_chat_per_step(gateway.fake, 1)


def test_codex_runs_exec_command_and_answers_with_the_output(codex, gateway):
    command, printed = marker_command()
    gateway.fake.reply(text=shell_call("exec_command", "cmd", command), chunk_size=7, times=1)
    gateway.fake.reply(text=f"The command printed {printed}.", chunk_size=5, times=1, citations=None)

    run = codex(f"Run `{command}` and tell me what it printed")

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == f"The command printed {printed}."
    assert command in run.stderr  # codex exec reports the command it ran on stderr
    first, second = gateway.fake.prompts()
    assert '<tool name="exec_command">' in first  # the CLI's tools reached Kimi through the tool core
    assert printed in second and printed not in first  # the real output of the command went back upstream
    assert_one_deleted_chat_per_step(gateway.fake, 2)
