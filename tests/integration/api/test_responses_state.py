"""Stored responses: ``store`` (the default) keeps the chat and the response, ``previous_response_id``
continues the chat natively, ``GET`` / ``DELETE /v1/responses/{id}``, ``store: false``, and no key can
read or continue another key's response."""

from __future__ import annotations

import io
from datetime import timedelta

import openai
import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.models import Conversation, RequestLog, StoredResponse
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import client_for, setup_pool


def only_chat(e2e):
    chats = list(e2e.fake.chats.values())
    assert len(chats) == 1
    return chats[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stored_response_is_continued_natively(e2e, stream):
    client, _ = setup_pool(e2e, accounts=2)
    e2e.fake.reply(text="I will remember 7.")
    if stream:
        with client.responses.stream(model="kimi", input="remember 7", instructions="Be brief.") as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model="kimi", input="remember 7", instructions="Be brief.")
    assert first.store is True
    # Readable at once, before the final write settled (the door stores it before the answer's end).
    assert client.responses.retrieve(first.id).output_text == "I will remember 7."

    e2e.fake.reply(text="You said 7.")
    second = client.responses.create(model="kimi", input="what number?", previous_response_id=first.id)
    assert second.output_text == "You said 7." and second.previous_response_id == first.id
    chat = only_chat(e2e)
    assert [m.text for m in chat.messages if m.role == "user"][-1] == "what number?"  # only the new input
    assert len([m for m in chat.messages if m.role == "user"]) == 2 and not chat.deleted
    wait_for_background_tasks()
    assert Conversation.objects.get(chat_id=chat.id).state == "kept"
    assert set(StoredResponse.objects.values_list("chat_id", flat=True)) == {chat.id}


def test_get_and_delete_a_stored_response(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="one")
    first = client.responses.create(model="kimi", input="a")
    wait_for_background_tasks()
    e2e.fake.reply(text="two")
    second = client.responses.create(model="kimi", input="b", previous_response_id=first.id)
    wait_for_background_tasks()
    got = client.responses.retrieve(second.id)
    assert (got.id, got.output_text, got.status) == (second.id, "two", "completed")

    client.responses.delete(first.id)  # the chat goes on in the second one: kept
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    assert not only_chat(e2e).deleted
    client.responses.delete(second.id)  # the last one of that chat: deleted upstream too
    assert only_chat(e2e).deleted
    assert not Conversation.objects.exists() and not StoredResponse.objects.exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(second.id)
    # Each read and delete has its log row: answered locally (no turn), or refused.
    rows = RequestLog.objects.filter(path__startswith="/v1/responses/").order_by("id")
    assert [(r.outcome, r.status_code, r.flags) for r in rows] == [
        ("local", 200, ["stored_response:get"]),
        ("local", 200, ["stored_response:delete"]),
        ("client_error", 404, []),
        ("local", 200, ["stored_response:delete"]),
        ("client_error", 404, []),
    ]
    assert all(r.account_id is None and r.api_key_id is not None for r in rows)


def test_store_false_keeps_nothing(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="gone")
    response = client.responses.create(model="kimi", input="x", store=False)
    wait_for_background_tasks()
    assert only_chat(e2e).deleted and not StoredResponse.objects.exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="kimi", input="y", previous_response_id=response.id)
    assert caught.value.body["param"] == "previous_response_id"


def test_another_key_cannot_read_continue_or_delete_a_stored_response(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="secret")
    mine = client.responses.create(model="kimi", input="x")
    wait_for_background_tasks()
    _, other_raw = make_api_key()
    other = client_for(e2e.url, other_raw)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="kimi", input="y", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    assert client.responses.retrieve(mine.id).output_text == "secret"
    assert not only_chat(e2e).deleted and len(e2e.fake.prompts()) == 1


def test_get_needs_a_key(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="x")
    mine = client.responses.create(model="kimi", input="x")
    with pytest.raises(openai.AuthenticationError):
        client_for(e2e.url, "sk-wrong").responses.retrieve(mine.id)


def test_expired_stored_responses_are_swept_by_the_cleanup(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="old")
    old = client.responses.create(model="kimi", input="x")
    wait_for_background_tasks()
    StoredResponse.objects.filter(pk=old.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)  # expired: gone at once for the client
    out = io.StringIO()
    call_command("cleanup_conversations", stdout=out)
    assert "dropped 1 expired stored response" in out.getvalue()
    assert not StoredResponse.objects.exists()


def test_a_tool_loop_continues_a_stored_response_with_only_the_tool_output(e2e):
    client, _ = setup_pool(e2e)
    tools = [{"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}]
    e2e.fake.reply(text='<tool_calls>\n<invoke name="get_time">\n</invoke>\n</tool_calls>')
    first = client.responses.create(model="kimi", input="What time is it?", tools=tools)
    call = next(item for item in first.output if item.type == "function_call")
    e2e.fake.reply(text="It is noon.")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "12:00"}
    second = client.responses.create(model="kimi", input=[output], tools=tools, previous_response_id=first.id)
    assert second.output_text == "It is noon."
    chat = only_chat(e2e)
    last = e2e.fake.prompts()[-1]
    assert "12:00" in last and "What time is it?" not in last  # the chat holds the question already
    assert len([m for m in chat.messages if m.role == "user"]) == 2
    log = RequestLog.objects.filter(path="/v1/responses").order_by("-id").first()
    assert log is not None and "previous_response" in wait_for_final_log(log.request_id).flags


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_continuing_an_earlier_response_forks_from_its_answer(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="first answer")
    first = client.responses.create(model="kimi", input="one")
    wait_for_background_tasks()
    e2e.fake.reply(text="second answer")
    client.responses.create(model="kimi", input="two", previous_response_id=first.id)
    wait_for_background_tasks()
    e2e.fake.reply(text="forked answer")
    if protocol == "legacy":
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="kimi", input="three", previous_response_id=first.id)
        assert caught.value.body["code"] == "previous_response_not_latest"
        wait_for_background_tasks()
        assert Conversation.objects.get().state == "kept"  # given back, still continuable
        return
    forked = client.responses.create(model="kimi", input="three", previous_response_id=first.id)
    assert forked.output_text == "forked answer"
    chat = only_chat(e2e)
    first_answer = next(m for m in chat.messages if m.role == "assistant" and m.text == "first answer")
    fork_question = next(m for m in chat.messages if m.role == "user" and m.text == "three")
    assert fork_question.parent_id == first_answer.id  # continued from the first answer, not the second


def test_delete_right_after_the_answer_still_deletes_the_chat(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="short-lived")
    response = client.responses.create(model="kimi", input="x")
    client.responses.delete(response.id)  # no wait: the answer's final write may still be running
    wait_for_background_tasks()
    assert only_chat(e2e).deleted and not Conversation.objects.exists()
