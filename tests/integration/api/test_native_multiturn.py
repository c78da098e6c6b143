"""Native multi-turn over chat completions (gateway/chat/native.py): a resent history continues the same
upstream chat with only the new turns; every mismatch falls back to a flattened new chat. The fake Kimi
records what each chat received, so the tests read what Kimi saw."""

from __future__ import annotations

import threading

import pytest

from gateway.models import Conversation
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import client_for, pool_account, setup_pool

SYSTEM = {"role": "system", "content": "You are terse."}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def weather_call(city: str) -> str:
    invoke = f'<invoke name="get_weather">\n<parameter name="city">{city}</parameter>\n</invoke>'
    return f"<tool_calls>\n{invoke}\n</tool_calls>"


def ask(client, messages, **kwargs):
    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=messages, **kwargs)
    completion = raw.parse()
    log = wait_for_final_log(raw.headers["x-request-id"])
    wait_for_background_tasks()
    return completion.choices[0].message, log


def user_texts(fake, chat_id):
    return [m.text for m in fake.chats[chat_id].messages if m.role == "user"]


@pytest.fixture
def native(e2e):
    pool_account(e2e.fake, "native")
    key, raw = make_api_key(native_multiturn=True)
    e2e.client, e2e.key, e2e.raw = client_for(e2e.url, raw), key, raw
    return e2e


def test_a_three_turn_conversation_resent_in_full_continues_one_chat(native):
    fake, client = native.fake, native.client
    history = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    fake.reply(text="Blue.")
    first, log1 = ask(client, history)
    assert first.content == "Blue." and "flattened:new" in log1.flags

    history += [{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "And another?"}]
    fake.reply(text="Red.")
    second, log2 = ask(client, history)
    history += [{"role": "assistant", "content": second.content}, {"role": "user", "content": "A third?"}]
    fake.reply(text="Green.")
    third, log3 = ask(client, history)

    assert (second.content, third.content) == ("Red.", "Green.")
    assert "native" in log2.flags and "native" in log3.flags
    assert (log1.turn_path, log2.turn_path, log3.turn_path) == ("flattened", "native", "native")
    # What a continuation did not send: the flattened history minus the one new message.
    assert log3.prompt_bytes_saved == log3.prompt_chars - len("A third?") > 0
    assert log1.upstream_chat_id == log2.upstream_chat_id == log3.upstream_chat_id
    chat = fake.chats[log1.upstream_chat_id]
    # Kimi received the flattened first turn, then only each new user message, each after its parent.
    texts = user_texts(fake, log1.upstream_chat_id)
    assert texts[1:] == ["And another?", "A third?"] and "Name a colour." in texts[0]
    by_id = {m.id: m for m in chat.messages}
    users = [m for m in chat.messages if m.role == "user"]
    assert all(by_id[u.parent_id].role == "assistant" for u in users[1:])
    assert not chat.deleted  # kept for the next turn (until the kept-conversation TTL)


def test_an_agent_loop_sends_only_the_tool_results_after_the_first_step(native):
    fake, client = native.fake, native.client
    history = [SYSTEM, {"role": "user", "content": "Weather in Oslo and Rome?"}]
    fake.reply(text=weather_call("Oslo"))
    call1, log1 = ask(client, history, tools=[WEATHER])
    assert call1.tool_calls and call1.tool_calls[0].function.name == "get_weather"

    history += [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in call1.tool_calls]},
        {"role": "tool", "tool_call_id": call1.tool_calls[0].id, "content": "Oslo: 3 C"},
    ]
    fake.reply(text=weather_call("Rome"))
    call2, log2 = ask(client, history, tools=[WEATHER])
    history += [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in call2.tool_calls]},
        {"role": "tool", "tool_call_id": call2.tool_calls[0].id, "content": "Rome: 18 C"},
    ]
    fake.reply(text="Oslo 3 C, Rome 18 C.")
    answer, log3 = ask(client, history, tools=[WEATHER])

    assert answer.content == "Oslo 3 C, Rome 18 C."
    assert log1.upstream_chat_id == log2.upstream_chat_id == log3.upstream_chat_id
    texts = user_texts(fake, log1.upstream_chat_id)
    assert "get_weather" in texts[0]  # the tool list went once, with the first turn
    # Each continuation names the answer that held the call as its parent (its id comes from the drain).
    messages = fake.chats[log1.upstream_chat_id].messages
    answers = [m.id for m in messages if m.role == "assistant"]
    sent = [c.body["message"].get("parent_id") for c in fake.calls if c.kind == "chat"]
    assert sent[1:] == answers[:2]
    for text, result in zip(texts[1:], ["Oslo: 3 C", "Rome: 18 C"], strict=True):
        assert result in text and "Weather of a city" not in text and "Weather in Oslo" not in text


def _two_turns(native, *, first_history):
    native.fake.reply(text="Blue.")
    _, log1 = ask(native.client, first_history)
    return log1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("edited_user", "no_state"),
        ("edited_answer", "no_state"),
        ("system", "no_state"),
        ("tools", "no_state"),
        ("removed_turn", "no_state"),
        ("no_new_turn", "no_new_turn"),
    ],
)
def test_every_mismatch_falls_back_to_a_flattened_new_chat(native, change, reason):
    fake, client = native.fake, native.client
    first = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    log1 = _two_turns(native, first_history=first)
    resent = [SYSTEM, {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    kwargs = {}
    if change == "edited_user":
        resent[1] = {"role": "user", "content": "Name a color."}
    elif change == "edited_answer":
        resent[2] = {"role": "assistant", "content": "Blue!"}
    elif change == "system":
        resent[0] = {"role": "system", "content": "You are verbose."}
    elif change == "tools":
        kwargs["tools"] = [WEATHER]
    elif change == "removed_turn":
        resent = [SYSTEM, {"role": "assistant", "content": "Blue."}]
    if change != "no_new_turn":
        resent.append({"role": "user", "content": "And another?"})
    fake.reply(text="Red.")
    message, log2 = ask(client, resent, **kwargs)
    assert message.content == "Red."
    assert f"flattened:{reason}" in log2.flags and "native" not in log2.flags
    assert log2.upstream_chat_id != log1.upstream_chat_id
    assert "Name a colour." in user_texts(fake, log1.upstream_chat_id)[0]
    assert len(user_texts(fake, log1.upstream_chat_id)) == 1  # the first chat got nothing more


def test_the_same_history_from_another_key_never_continues_its_chat(native):
    history = [SYSTEM, {"role": "user", "content": "Secret plan?"}]
    native.fake.reply(text="Plan A.")
    _, log1 = ask(native.client, history)
    _, other_raw = make_api_key(native_multiturn=True)
    other = client_for(native.url, other_raw)
    native.fake.reply(text="Plan B.")
    _, log2 = ask(other, [*history, {"role": "assistant", "content": "Plan A."}, {"role": "user", "content": "More?"}])
    assert "flattened:no_state" in log2.flags and log2.upstream_chat_id != log1.upstream_chat_id


def test_two_clients_resending_one_state_at_once_one_continues(native):
    fake, client = native.fake, native.client
    history = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    fake.reply(text="Blue.")
    _, log1 = ask(client, history)
    history += [{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    fake.reply(text="Red.", delay=0.3)
    fake.reply(text="Red.", delay=0.3)
    logs = []

    def send():
        logs.append(ask(client, history)[1])

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    paths = sorted(next(f for f in log.flags if f == "native" or f.startswith("flattened")) for log in logs)
    assert paths == ["flattened:busy", "native"]
    native_log = next(log for log in logs if "native" in log.flags)
    assert native_log.upstream_chat_id == log1.upstream_chat_id


def test_a_turn_with_text_after_the_call_is_never_continued(native):
    fake, client = native.fake, native.client
    history = [SYSTEM, {"role": "user", "content": "Weather in Oslo?"}]
    fake.reply(
        text='<tool_calls>\n<invoke name="get_weather">\n<parameter name="city">Oslo</parameter>\n</invoke>\n'
        "</tool_calls>\nThe weather is 3 C (invented)."
    )
    call, log1 = ask(client, history, tools=[WEATHER])
    assert any(f.startswith("trailing_after_tool") for f in log1.flags)
    history += [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in call.tool_calls]},
        {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "Oslo: 3 C"},
    ]
    fake.reply(text="3 C.")
    _, log2 = ask(client, history, tools=[WEATHER])
    assert "flattened:no_state" in log2.flags and log2.upstream_chat_id != log1.upstream_chat_id


def test_the_account_holding_the_chat_cannot_serve_so_another_flattens(native):
    fake, client = native.fake, native.client
    pool_account(fake, "spare")
    history = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    fake.reply(text="Blue.")
    _, log1 = ask(client, history)
    from accounts.models import KimiAccount

    KimiAccount.objects.filter(pk=log1.account_id).update(state="exhausted", cooldown_until="2099-01-01T00:00:00Z")
    fake.reply(text="Red.")
    history += [{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    message, log2 = ask(client, history)
    assert message.content == "Red." and "flattened:account_unavailable" in log2.flags
    assert log2.account_id != log1.account_id
    assert Conversation.objects.get(chat_id=log1.upstream_chat_id).state == "kept"  # given back, not lost


def test_without_the_mode_each_chat_is_deleted_after_its_answer(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="Blue.")
    _, log = ask(client, [{"role": "user", "content": "Name a colour."}])
    assert e2e.fake.chats[log.upstream_chat_id].deleted
    assert not any(f == "native" or f.startswith("flattened") for f in log.flags)


def test_two_sessions_sending_the_same_first_message_at_once_keep_two_chats(native):
    fake = native.fake
    first = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    clients = {s: client_for(native.url, native.raw, default_headers={"x-claude-code-session-id": s}) for s in "AB"}
    fake.reply(text="Blue.", delay=0.3, times=2)
    logs: dict[str, object] = {}

    def send(session):
        logs[session] = ask(clients[session], first)[1]

    threads = [threading.Thread(target=send, args=(s,)) for s in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert logs["A"].upstream_chat_id != logs["B"].upstream_chat_id  # two chats, each flattened:new
    # Both hold the same history, yet each session continues its own chat.
    for session in "AB":
        fake.reply(text=f"Red for {session}.")
        history = [*first, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": f"{session}?"}]
        message, log = ask(clients[session], history)
        assert message.content == f"Red for {session}." and "native" in log.flags
        assert log.upstream_chat_id == logs[session].upstream_chat_id
        assert user_texts(fake, log.upstream_chat_id)[-1] == f"{session}?"


def test_a_hint_narrows_but_the_history_decides(native):
    fake = native.fake
    alice = client_for(native.url, native.raw, default_headers={"x-claude-code-session-id": "alice"})
    history = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    fake.reply(text="Blue.")
    _, log1 = ask(alice, history)
    # The same session with a changed history: flattened.
    fake.reply(text="Red.")
    edited = [SYSTEM, {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Blue."}]
    _, log2 = ask(alice, [*edited, {"role": "user", "content": "Another?"}])
    assert "flattened:no_state" in log2.flags
    # Another session with the same history: not this session's chat.
    bob = client_for(native.url, native.raw, default_headers={"x-claude-code-session-id": "bob"})
    fake.reply(text="Green.")
    resent = [*history, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    _, log3 = ask(bob, resent)
    assert "flattened:no_state" in log3.flags and log3.upstream_chat_id != log1.upstream_chat_id
    fake.reply(text="Yellow.")
    _, log4 = ask(alice, resent)
    assert "native" in log4.flags and log4.upstream_chat_id == log1.upstream_chat_id


def test_a_continuation_the_upstream_refuses_is_flattened_on_another_account(native):
    fake, client = native.fake, native.client
    history = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    fake.reply(text="Blue.")
    _, log1 = ask(client, history)
    assert log1.account.name == "native"
    pool_account(fake, "spare")
    fake.fault("overloaded", account="native")
    fake.reply(text="Red.")
    history += [{"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    message, log2 = ask(client, history)
    assert message.content == "Red." and "flattened:upstream_error" in log2.flags
    assert (log2.account.name, log2.attempts) == ("spare", 2)
    assert "Name a colour." in fake.prompts("spare")[-1]  # the whole history, flattened
