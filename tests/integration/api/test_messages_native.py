"""Native multi-turn (gateway/chat/native.py) through the Messages door: a Claude-Code-style tool loop
resent in full continues one Kimi chat with only the tool result; a count_tokens or a probe between the
steps (answered locally) neither claims nor disturbs that chat."""

from __future__ import annotations

import anthropic
import pytest

from gateway.models import RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account
from tests.integration.api.test_tools import block, invoke

MODEL = "claude-opus-5-5"
BASH = {
    "name": "Bash",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
SYSTEM = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"}, {"type": "text", "text": "Be a CLI."}]
SESSION = {"x-claude-code-session-id": "0b1c2d3e-aaaa-bbbb-cccc-000000000001"}


@pytest.fixture
def native(e2e):
    pool_account(e2e.fake, "native")
    _, raw = make_api_key(native_multiturn=True)
    e2e.client = anthropic.Anthropic(
        base_url=e2e.url, auth_token=raw, max_retries=0, timeout=20, default_headers=SESSION
    )
    return e2e


def step(client, messages, *, stream: bool):
    kwargs = {"model": MODEL, "max_tokens": 32000, "system": SYSTEM, "tools": [BASH], "messages": messages}
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
            request_id = s.response.headers["request-id"]
    else:
        raw = client.messages.with_raw_response.create(**kwargs)
        message, request_id = raw.parse(), raw.headers["request-id"]
    log = wait_for_final_log(request_id)
    wait_for_background_tasks()
    return message, log


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_loop_continues_one_chat_and_local_answers_leave_it_alone(native, stream):
    fake, client = native.fake, native.client
    history = [{"role": "user", "content": "Run echo hi"}]
    fake.reply(text=block(invoke("Bash", command="echo hi")))
    first, log1 = step(client, history, stream=stream)
    (call,) = first.content
    assert call.type == "tool_use" and "flattened:new" in log1.flags

    history += [
        {"role": "assistant", "content": [c.model_dump(exclude_none=True) for c in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "hi"}]},
    ]
    counted = client.messages.count_tokens(model=MODEL, system=SYSTEM, tools=[BASH], messages=history)
    assert counted.input_tokens > 0
    probe = client.messages.with_raw_response.create(  # a probe, answered locally
        model=MODEL, max_tokens=1, system=SYSTEM, tools=[BASH], messages=history
    )
    wait_for_background_tasks()
    for local in RequestLog.objects.filter(path__startswith="/v1/messages").exclude(request_id__in=[log1.request_id]):
        assert local.outcome == "local" and not any(f == "native" or f.startswith("flattened") for f in local.flags)
    assert probe.parse().stop_reason == "max_tokens"

    fake.reply(text="It printed hi.")
    second, log2 = step(client, history, stream=stream)
    assert [(b.type, b.text) for b in second.content] == [("text", "It printed hi.")]
    assert "native" in log2.flags and log2.upstream_chat_id == log1.upstream_chat_id
    texts = [m.text for m in fake.chats[log1.upstream_chat_id].messages if m.role == "user"]
    assert len(texts) == 2 and "Run echo hi" in texts[0] and "Run echo hi" not in texts[1]
    assert f'<tool_result call_id="{call.id}" name="Bash">' in texts[1]
    assert len(fake.chats) == 1  # the count and the probe reached no chat


def test_a_three_turn_conversation_resent_in_full_continues_one_chat(native):
    client, fake = native.client, native.fake
    messages = [{"role": "user", "content": "Name a colour."}]
    logs, answers = [], []
    for reply, follow_up in (("Blue.", "And another?"), ("Red.", "A third?"), ("Green.", None)):
        fake.reply(text=reply, times=1)
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=1024, system=SYSTEM, messages=messages)
        message = raw.parse()
        logs.append(wait_for_final_log(raw.headers["request-id"]))
        wait_for_background_tasks()
        answers.append(message.content[0].text)
        # Claude Code resends the answer as its content blocks, with the next question.
        messages = [*messages, {"role": "assistant", "content": [b.model_dump() for b in message.content]}]
        if follow_up:
            messages.append({"role": "user", "content": [{"type": "text", "text": follow_up}]})
    assert answers == ["Blue.", "Red.", "Green."]
    assert [log.turn_path for log in logs] == ["flattened", "native", "native"]
    assert len({log.upstream_chat_id for log in logs}) == 1
    chat = fake.chats[logs[0].upstream_chat_id]
    users = [m for m in chat.messages if m.role == "user"]
    assert [u.text for u in users[1:]] == ["And another?", "A third?"]  # only the new turn, after its parent
    by_id = {m.id: m for m in chat.messages}
    assert all(by_id[u.parent_id].role == "assistant" for u in users[1:])
