"""Stored Responses answers (``store``): save, read, continue, delete, sweep.

A stored response names the kept upstream chat it answered in (account + chat id). Continuing one
(``previous_response_id``) continues that chat natively, on the same account, with the owner check of
``conversation_id`` (records/conversations.py): another key's id is simply not found. An earlier
response of a chat that went on since is continued from its own answer (a fork: Connect's parent id);
legacy accounts can only continue the latest. Deleting one deletes
its chat upstream once no other stored response of that chat is left. Rows expire with the
kept-conversation TTL (``cleanup_conversations`` sweeps them).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.choices import Protocol
from accounts.models import KimiAccount
from gateway.choices import ConversationState
from gateway.models import Conversation, StoredResponse
from gateway.openai.errors import ConversationUnavailable, InvalidRequest, NotFound
from gateway.records.conversations import (
    ContinuedConversation,
    conversation_delete_upstream,
    conversation_for_continue,
    conversation_release_unused,
)

# The answer's final write (which marks its chat kept) runs just after the client got the answer; a
# client continuing at once waits this long for it rather than getting a 409.
SETTLE_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


def stored_response_ttl() -> timedelta:
    return timedelta(hours=settings.KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS)


def stored_response_save(
    *,
    response_id: str,
    owner_hash: str,
    api_key_id: int | None,
    account_id: int | None,
    chat_id: str,
    previous_response_id: str | None,
    body: dict[str, Any],
    message_id: str = "",
    now: datetime | None = None,
) -> None:
    now = now or timezone.now()
    StoredResponse.objects.create(
        id=response_id,
        owner_hash=owner_hash[:64],
        api_key_id=api_key_id,
        account_id=account_id,
        chat_id=chat_id[:64],
        previous_response_id=previous_response_id or "",
        message_id=message_id[:64],
        body=body,
        created_at=now,
        expires_at=now + stored_response_ttl(),
    )


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="response_not_found")


def stored_response_get(*, response_id: str, owners: tuple[str, ...], now: datetime | None = None) -> dict[str, Any]:
    """The stored response object of this caller (NotFound for another caller's, or an expired one)."""
    now = now or timezone.now()
    row = StoredResponse.objects.filter(pk=response_id, owner_hash__in=owners, expires_at__gt=now).first()
    if row is None:
        raise _not_found(response_id)
    body: dict[str, Any] = row.body
    return body


def stored_response_continue(*, response_id: str, owners: tuple[str, ...]) -> ContinuedConversation:
    """The kept chat of this caller's stored response, claimed for the request continuing it."""
    missing = NotFound(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )
    row = StoredResponse.objects.filter(pk=response_id, owner_hash__in=owners, expires_at__gt=timezone.now()).first()
    if row is None or not row.chat_id:
        raise missing
    deadline = time.monotonic() + SETTLE_WAIT_SECONDS + settings.KIMIPROXY_TOOL_DRAIN_SECONDS
    while True:
        try:
            continued = conversation_for_continue(chat_id=row.chat_id, owners=owners)
            break
        except NotFound:
            # The stored response's own request may still be settling (its chat is kept by the final
            # write, after a tool call's drain): wait for it as for a chat in use.
            if not _settling(row.chat_id, owners) or time.monotonic() >= deadline:
                raise missing from None
            time.sleep(_POLL_SECONDS)
        except ConversationUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_POLL_SECONDS)
    if not row.message_id or row.message_id == continued.parent_message_id:
        return continued
    # An earlier response of the chat: continue from its answer (a fork), which Connect can do.
    protocol = KimiAccount.objects.filter(pk=continued.account_id).values_list("protocol", flat=True).first()
    if protocol != Protocol.CONNECT:
        conversation_release_unused(conversation_id=continued.conversation_id)
        raise InvalidRequest(
            "Only the latest response of this conversation can be continued on this account.",
            param="previous_response_id",
            code="previous_response_not_latest",
        )
    return dataclasses.replace(continued, parent_message_id=row.message_id)


def _settling(chat_id: str, owners: tuple[str, ...]) -> bool:
    """The chat's row exists and its request has not been settled yet (not kept, not deleted)."""
    return Conversation.objects.filter(chat_id=chat_id, owner_hash__in=owners, state=ConversationState.ACTIVE).exists()


def stored_response_forget(*, response_id: str, owners: tuple[str, ...]) -> int | None:
    """Delete this caller's stored response; the id of its conversation row when nothing else
    continues that chat any more (the caller deletes it upstream), else None. NotFound when absent."""
    row = StoredResponse.objects.filter(pk=response_id, owner_hash__in=owners).first()
    if row is None:
        raise _not_found(response_id)
    row.delete()
    if not row.chat_id or StoredResponse.objects.filter(chat_id=row.chat_id, account_id=row.account_id).exists():
        return None
    rows = Conversation.objects.filter(chat_id=row.chat_id, account_id=row.account_id, owner_hash__in=owners)
    deadline = time.monotonic() + SETTLE_WAIT_SECONDS + settings.KIMIPROXY_TOOL_DRAIN_SECONDS
    while True:  # a chat still answering (its final write not done yet) is waited for, briefly
        found = rows.values_list("pk", "state", "kept").first()
        if found is None:
            return None
        pk, state, kept = found
        if state != ConversationState.ACTIVE:
            return pk if kept else None
        if time.monotonic() >= deadline:
            return None  # busy: the kept chat expires with its TTL
        time.sleep(_POLL_SECONDS)


async def stored_response_delete(*, conversation_id: int | None) -> None:
    """Delete the chat of a forgotten response upstream (a failed delete is left to the cleanup)."""
    if conversation_id is not None:
        await conversation_delete_upstream(conversation_id=conversation_id)


def stored_responses_sweep(*, now: datetime | None = None) -> int:
    """Drop expired stored responses (their chats expire on their own, as kept conversations)."""
    deleted, _ = StoredResponse.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
