"""Upstream conversations the gateway created: record, settle, delete, continue, sweep.

Life of a row: recorded (``active``) as soon as the upstream chat id is known, by a task that runs
while the answer goes on. Right after the answer a tracked background task deletes the chat upstream, then
the request's final write removes the row, or keeps it as ``kept`` (continuation). A failed delete
leaves ``delete_failed``; ``cleanup_conversations`` (and the admin action) finish those, expired kept
chats, and ``active`` rows left behind by a process that died.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import KimiAccount
from gateway.choices import ConversationState
from gateway.db import eventloop, run
from gateway.db.threads import db_call
from gateway.kimi import session_for
from gateway.kimi.base import KimiError
from gateway.kimi.transport.http import run_upstream
from gateway.models import Conversation
from gateway.openai.errors import ConversationUnavailable, NotFound

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120


# One hand-written INSERT (SQLite 3.35+ and Postgres both return the id): it runs on every request.
_RECORD = (
    f"INSERT INTO {Conversation._meta.db_table} (account_id, chat_id, state, kept, api_key_id, owner_hash,"  # noqa: S608
    " parent_message_id, request_id, created_at, last_used_at, delete_attempts, last_error)"
    " VALUES (%s, %s, %s, %s, %s, %s, '', %s, %s, %s, 0, '') RETURNING id"
)


def _record_params(
    account_id: int, chat_id: str, api_key_id: int | None, owner_hash: str, request_id: str, now: datetime | None
) -> list[Any]:
    moment = eventloop.statement_connection().ops.adapt_datetimefield_value(now or timezone.now())
    state = ConversationState.ACTIVE.value
    return [account_id, chat_id[:64], state, False, api_key_id, owner_hash[:64], request_id[:64], moment, moment]


def _insert_record(params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_RECORD, params)
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def conversation_record(
    *,
    account_id: int,
    chat_id: str,
    api_key_id: int | None,
    owner_hash: str,
    request_id: str,
    now: datetime | None = None,
) -> int:
    """Record a new upstream chat (as soon as its id is known); returns the row id."""
    return _insert_record(_record_params(account_id, chat_id, api_key_id, owner_hash, request_id, now))


async def conversation_record_async(
    *,
    account_id: int,
    chat_id: str,
    api_key_id: int | None,
    owner_hash: str,
    request_id: str,
    now: datetime | None = None,
) -> int:
    """``conversation_record`` from async code: on the event loop's own connection pool when it can
    (gateway/db/eventloop.py), else in a worker thread."""
    params = _record_params(account_id, chat_id, api_key_id, owner_hash, request_id, now)
    created = await run.fetchone(_RECORD, params)
    assert created is not None
    return int(created[0])


@dataclasses.dataclass(frozen=True)
class ContinuedConversation:
    conversation_id: int
    account_id: int
    chat_id: str
    parent_message_id: str


def conversation_for_continue(*, chat_id: str, owners: tuple[str, ...]) -> ContinuedConversation:
    """The kept conversation ``chat_id`` of this caller, marked active again.

    Raises NotFound when there is no such kept conversation for this caller (a key can only continue
    conversations it started), ConversationUnavailable when another request is using it right now.
    """
    row = Conversation.objects.filter(chat_id=chat_id, owner_hash__in=owners, kept=True).first()
    if row is None or row.state not in (ConversationState.KEPT, ConversationState.ACTIVE):
        raise NotFound(
            f"No conversation {chat_id!r} to continue for this key.",
            param="conversation_id",
            code="conversation_not_found",
        )
    claimed = Conversation.objects.filter(pk=row.pk, state=ConversationState.KEPT).update(
        state=ConversationState.ACTIVE, last_used_at=timezone.now()
    )
    if claimed != 1:
        raise ConversationUnavailable(f"Conversation {chat_id!r} is answering another request right now.")
    return ContinuedConversation(row.pk, row.account_id, row.chat_id, row.parent_message_id)


def conversation_settled_state(*, keep: bool, delete_error: str = "") -> str:
    """The state a settled row takes when it stays (a chat deleted upstream loses its row instead)."""
    if keep:
        return ConversationState.KEPT
    return ConversationState.DELETE_FAILED if delete_error else ConversationState.PENDING_DELETE


def conversation_settle(
    *,
    conversation_id: int,
    keep: bool,
    parent_message_id: str = "",
    deleted: bool = False,
    delete_error: str = "",
    now: datetime | None = None,
) -> None:
    """After the answer: keep the chat for continuation, or record what became of its deletion.

    ``deleted``: the chat is gone upstream, so the row goes too. ``delete_error``: the delete failed
    and the row waits for ``cleanup_conversations``. Neither: the chat is queued for deletion.
    """
    now = now or timezone.now()
    rows = Conversation.objects.filter(pk=conversation_id)
    if deleted and not keep:
        rows.delete()
        return
    state = conversation_settled_state(keep=keep, delete_error=delete_error)
    fields: dict[str, object] = {"state": state, "kept": keep, "last_used_at": now}
    if parent_message_id:
        fields["parent_message_id"] = parent_message_id
    if state == ConversationState.DELETE_FAILED:
        fields.update(
            last_error=delete_error[:300],
            claimed_until=None,
            delete_attempts=F("delete_attempts") + 1,
        )
    rows.update(**fields)


def conversation_release_unused(*, conversation_id: int) -> None:
    """Give back a continued conversation that could not be served (no account, validation)."""
    Conversation.objects.filter(pk=conversation_id, state=ConversationState.ACTIVE).update(state=ConversationState.KEPT)


async def conversation_delete_upstream(*, conversation_id: int, known: tuple[KimiAccount, str] | None = None) -> bool:
    """Delete one recorded chat upstream and drop its row; on failure keep it as ``delete_failed``.

    ``known`` is the (account, chat id) when the caller already has them (right after the answer),
    which saves reading them back from the database.
    """
    if known is None:
        row = await db_call(_load_for_delete, conversation_id)
        if row is None:
            return True
        known = row[1], row[0].chat_id
    error = await chat_delete(*known)
    if error:
        await db_call(_mark_delete_failed, conversation_id, error)
        return False
    await db_call(_drop, conversation_id)
    return True


async def chat_delete(account: KimiAccount, chat_id: str) -> str:
    """Delete one chat upstream (no database work); return "" when it is gone, else why it is not."""
    try:
        if chat_id:
            await session_for(account).delete_chat(chat_id)
    except KimiError as exc:
        log.warning("delete of chat %s on account %s failed: %s", chat_id, account.name, exc.code)
        return f"{exc.code}: {exc.message}"[:300]
    return ""


def _load_for_delete(conversation_id: int) -> tuple[Conversation, KimiAccount] | None:
    conversation = Conversation.objects.select_related("account").filter(pk=conversation_id).first()
    if conversation is None:
        return None
    return conversation, conversation.account


def _mark_delete_failed(conversation_id: int, error: str) -> None:
    Conversation.objects.filter(pk=conversation_id).update(
        state=ConversationState.DELETE_FAILED,
        last_error=error,
        claimed_until=None,
        delete_attempts=F("delete_attempts") + 1,
    )


def _drop(conversation_id: int) -> None:
    # One statement: QuerySet.delete() would wrap this lone DELETE in a transaction of its own.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Conversation._meta.db_table} WHERE id = %s", [conversation_id])  # noqa: S608


def conversations_delete_now(*, conversation_ids: list[int]) -> tuple[int, int]:
    """Delete these conversations upstream now (admin action); returns (deleted, failed)."""

    async def run() -> tuple[int, int]:
        deleted = failed = 0
        for conversation_id in conversation_ids:
            if await conversation_delete_upstream(conversation_id=conversation_id):
                deleted += 1
            else:
                failed += 1
        return deleted, failed

    return run_upstream(run)


def conversations_due_for_cleanup(*, older_than: timedelta, now: datetime | None = None) -> Q:
    """Rows to sweep: leftovers older than ``older_than``, expired kept chats, abandoned active ones."""
    now = now or timezone.now()
    ttl = timedelta(hours=settings.KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS)
    abandoned = timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT)
    leftovers = Q(
        state__in=[ConversationState.PENDING_DELETE, ConversationState.DELETE_FAILED], last_used_at__lt=now - older_than
    )
    expired = Q(state=ConversationState.KEPT, last_used_at__lt=now - ttl)
    dead = Q(state=ConversationState.ACTIVE, last_used_at__lt=now - abandoned)
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return (leftovers | expired | dead) & unclaimed


def conversation_claim(*, conversation_id: int, now: datetime | None = None) -> bool:
    """Claim one row for this sweeper; False when another worker got there first."""
    now = now or timezone.now()
    claimed = Conversation.objects.filter(
        Q(pk=conversation_id) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    ).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    return claimed == 1


@dataclasses.dataclass(frozen=True)
class SweepItem:
    conversation_id: int
    chat_id: str
    account_name: str
    reason: str
    deleted: bool


def _due(*, older_than: timedelta, limit: int) -> list[tuple[int, str, str, str]]:
    rows = (
        Conversation.objects.filter(conversations_due_for_cleanup(older_than=older_than))
        .select_related("account")
        .order_by("last_used_at")[:limit]
    )
    return [(c.pk, c.chat_id, c.account.name, c.state) for c in rows]


async def conversations_sweep(
    *, older_than: timedelta, limit: int = 100, should_stop: Callable[[], bool] = lambda: False
) -> list[SweepItem]:
    """Delete leftover, expired-kept and abandoned chats upstream, one claimed row at a time.

    Each row is claimed with a conditional update first, so two sweepers never delete the same chat;
    ``should_stop`` is checked between rows (SIGTERM finishes the current item, then stops).
    """
    done: list[SweepItem] = []
    for conversation_id, chat_id, account_name, state in await db_call(_due, older_than=older_than, limit=limit):
        if should_stop():
            break
        if not await db_call(conversation_claim, conversation_id=conversation_id):
            continue  # another worker got there first
        deleted = await conversation_delete_upstream(conversation_id=conversation_id)
        done.append(SweepItem(conversation_id, chat_id, account_name, state, deleted))
    return done
