"""``cleanup_conversations`` finishes deletes that failed, expired kept chats and abandoned ones."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Turn
from gateway.models import Conversation, RequestLog
from tests.fixtures_gateway import wait_for_background_tasks
from tests.integration.api.helpers import setup_pool


def run(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_conversations", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_it_retries_a_delete_that_failed(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.fault("http_5xx", on=["delete"], times=1)
    client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "x"}])
    wait_for_background_tasks()
    row = Conversation.objects.get()
    assert row.state == "delete_failed" and row.delete_attempts == 1
    assert not e2e.fake.chats[row.chat_id].deleted

    assert "nothing to clean up" in run("--older-than", "1h")  # too recent
    output = run("--older-than", "0s")

    assert f"deleted chat {row.chat_id}" in output
    assert e2e.fake.chats[row.chat_id].deleted
    assert not Conversation.objects.exists()


def test_it_deletes_kept_chats_after_their_idle_time(e2e, settings):
    client, _ = setup_pool(e2e)
    answer = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "x"}], extra_body={"conversation_id": "new"}
    )
    wait_for_background_tasks()
    chat_id = answer.model_extra["conversation_id"]
    assert "nothing to clean up" in run("--older-than", "0s")  # kept, not expired

    Conversation.objects.update(last_used_at=timezone.now() - timedelta(hours=25))
    assert f"deleted chat {chat_id}" in run("--older-than", "10m")
    assert e2e.fake.chats[chat_id].deleted


def test_it_cleans_up_after_a_process_that_died(e2e, settings):
    client, _ = setup_pool(e2e)
    client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "x"}])
    wait_for_background_tasks()
    # Simulate a worker that died mid-answer: its chat row still "active", its lease still in flight.
    turn = Turn.objects.get()
    chat_id = next(iter(e2e.fake.chats))
    e2e.fake.chats[chat_id]  # noqa: B018 - the chat exists upstream
    long_ago = timezone.now() - timedelta(hours=2)
    Conversation.objects.create(
        account_id=turn.account_id, chat_id="ghost-chat", state="active", created_at=long_ago, last_used_at=long_ago
    )
    Turn.objects.filter(pk=turn.pk).update(status="in_flight", lease_expires_at=long_ago, released_at=None)
    RequestLog.objects.update(outcome="pending", created_at=long_ago)

    output = run("--older-than", "10m")

    assert "reclaimed 1 stale lease" in output
    assert "closed 1 abandoned request log" in output
    assert RequestLog.objects.get().error_code == "abandoned"
    assert "ghost-chat" in output
    assert not Turn.objects.filter(status="in_flight").exists()


def test_it_rejects_a_bad_duration(db):
    with pytest.raises(CommandError, match="not a duration"):
        run("--older-than", "soon")
