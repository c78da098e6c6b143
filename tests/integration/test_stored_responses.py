"""records/responses.py: continuing a stored response whose own request is still being settled."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from gateway.models import Conversation
from gateway.openai.errors import NotFound
from gateway.records.conversations import conversation_settle
from gateway.records.responses import stored_response_continue, stored_response_save
from tests.factories import make_account

OWNER = "key:1"


def _stored(state: str, *, kept: bool) -> Conversation:
    account = make_account()
    now = timezone.now()
    row = Conversation.objects.create(
        account=account, chat_id="chat-1", owner_hash=OWNER, state=state, kept=kept, created_at=now, last_used_at=now
    )
    stored_response_save(
        response_id="resp_1", owner_hash=OWNER, api_key_id=None, account_id=account.pk, chat_id="chat-1",
        previous_response_id=None, body={"id": "resp_1"},
    )  # fmt: skip
    return row


@pytest.mark.django_db(transaction=True)
def test_a_continuation_waits_for_the_stored_responses_final_write() -> None:
    row = _stored("active", kept=False)  # the answer was sent; its final write has not run yet

    def final_write() -> None:
        time.sleep(0.3)
        conversation_settle(conversation_id=row.pk, keep=True)
        connection.close()

    writer = threading.Thread(target=final_write)
    writer.start()
    try:
        continued = stored_response_continue(response_id="resp_1", owners=(OWNER,))
    finally:
        writer.join()
    assert (continued.conversation_id, continued.chat_id) == (row.pk, "chat-1")
    assert Conversation.objects.get(pk=row.pk).state == "active"  # claimed by the continuation


@pytest.mark.django_db
def test_a_stored_response_whose_chat_is_gone_is_not_found_at_once() -> None:
    _stored("pending_delete", kept=False)
    started = time.monotonic()
    with pytest.raises(NotFound):
        stored_response_continue(response_id="resp_1", owners=(OWNER,))
    assert time.monotonic() - started < 1  # nothing to wait for
