"""Keeping an upstream conversation and continuing it; pass-through tokens."""

from __future__ import annotations

import openai
import pytest

from accounts.models import KimiAccount
from gateway.models import Conversation
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import client_for, setup_pool

PROTOCOLS = ["connect", "legacy"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
def test_it_keeps_and_continues_a_conversation(e2e, protocol, stream):
    client, _ = setup_pool(e2e, protocol=protocol, accounts=2)
    e2e.fake.reply(text="first answer")

    first = client.chat.completions.create(
        model="kimi",
        messages=[{"role": "user", "content": "remember 7"}],
        extra_body={"conversation_id": "new"},
        stream=stream,
    )
    conversation_id = _conversation_id(first, stream)
    wait_for_background_tasks()
    assert Conversation.objects.get(chat_id=conversation_id).state == "kept"

    e2e.fake.reply(text="second answer")
    second = client.chat.completions.create(
        model="kimi",
        messages=[
            {"role": "user", "content": "remember 7"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "what number?"},
        ],
        extra_body={"conversation_id": conversation_id},
    )
    assert second.choices[0].message.content == "second answer"
    chat = e2e.fake.chats[conversation_id]
    assert [m.text for m in chat.messages if m.role == "user"] == ["remember 7", "what number?"]
    assert not chat.deleted
    wait_for_background_tasks()
    assert Conversation.objects.get(chat_id=conversation_id).state == "kept"


def _conversation_id(response, stream: bool) -> str:
    if not stream:
        return response.model_extra["conversation_id"]
    chunks = list(response)
    # The client has [DONE] now; the server's final write (which marks the chat kept) starts only after
    # it sent that, so wait for it rather than for whatever background work exists at this instant.
    wait_for_final_log(response.response.headers["x-request-id"])
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    return ids.pop()


def test_a_key_cannot_continue_another_keys_conversation(e2e):
    client, _ = setup_pool(e2e)
    first = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "x"}], extra_body={"conversation_id": "new"}
    )
    _, other_raw = make_api_key()
    other = client_for(e2e.url, other_raw)
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(
            model="kimi",
            messages=[{"role": "user", "content": "y"}],
            extra_body={"conversation_id": first.model_extra["conversation_id"]},
        )


@pytest.mark.parametrize(("state", "status"), [("exhausted", 429), ("disabled", 409), ("invalid", 409)])
def test_it_says_why_a_kept_conversation_cannot_continue(e2e, state, status):
    client, _ = setup_pool(e2e)
    first = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "x"}], extra_body={"conversation_id": "new"}
    )
    wait_for_background_tasks()
    KimiAccount.objects.update(state=state, cooldown_until="2099-01-01T00:00:00Z")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="kimi",
            messages=[{"role": "user", "content": "y"}],
            extra_body={"conversation_id": first.model_extra["conversation_id"]},
        )
    assert caught.value.status_code == status
    if status == 429:
        assert "Retry-After" in caught.value.response.headers
    else:
        assert caught.value.body["code"] == "conversation_unavailable"
    wait_for_background_tasks()
    assert Conversation.objects.get().state == "kept"  # still there for later


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_serves_pass_through_tokens_and_keeps_rotations_server_side(e2e, protocol):
    one = e2e.fake.mint_account("pt-one", protocol=protocol)
    two = e2e.fake.mint_account("pt-two", protocol=protocol)
    client = client_for(e2e.url, f"{one.refresh_token},{two.refresh_token}")

    for i in range(4):
        answer = client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": f"q{i}"}])
        assert answer.choices[0].message.content

    accounts = KimiAccount.objects.filter(source="passthrough")
    assert accounts.count() == 2
    used = {
        name: e2e.fake.count("chat" if protocol == "connect" else "stream", account=name)
        for name in ("pt-one", "pt-two")
    }
    assert used["pt-one"] >= 1 and used["pt-two"] >= 1  # spare capacity is preferred
    assert sum(used.values()) == 4
    for account in accounts:
        assert one.refresh_token[-12:] not in account.name and account.token_hash


def test_pass_through_can_be_switched_off(e2e, settings):
    settings.KIMIPROXY_PASSTHROUGH = False
    token = e2e.fake.mint_account("pt", protocol="connect").refresh_token
    with pytest.raises(openai.AuthenticationError):
        client_for(e2e.url, token).chat.completions.create(model="kimi", messages=[{"role": "user", "content": "q"}])
