"""One account's try at an answer: the plan it serves, the open upstream stream, and how a failed
try is settled (lease released, refunded when the upstream did no work, its chat queued for deletion).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from django.conf import settings
from django.db import transaction

from accounts.choices import LeaseOutcome
from accounts.models import KimiAccount
from accounts.pool import Lease, lease_release
from gateway import lifecycle
from gateway.callers import Caller
from gateway.conversations import (
    ContinuedConversation,
    conversation_delete_upstream,
    conversation_record_async,
    conversation_settle,
)
from gateway.dbcall import db_call
from gateway.kimi import session_for
from gateway.kimi.base import (
    BadRequest,
    ChatCreated,
    ContentFiltered,
    Done,
    FileBlob,
    FileRejected,
    Heartbeat,
    KimiError,
    KimiEvent,
    KimiSession,
    TurnRequest,
    UpstreamTimeout,
)
from gateway.kimi.uploads import upload_cached
from gateway.waiting import slot_waiters

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Plan:
    """Everything decided before the upstream call."""

    request_id: str
    log_id: int
    caller: Caller
    turn: TurnRequest  # files are filled in per account (uploads are per account)
    blobs: list[FileBlob]
    keep: bool  # keep the upstream chat for continuation
    continued: ContinuedConversation | None
    started: float  # time.monotonic() when the request arrived
    prompt_text: str
    flags: tuple[str, ...] = ()  # as logged on accept


def lease_outcome(exc: KimiError) -> LeaseOutcome:
    """The pool's name for how an attempt ended (what the account gets is accounts/pool/rules.py's table).

    Every timeout is one outcome, a refused file is the client's bad request; every other upstream
    error's ``code`` is a lease outcome of the same name (a bare KimiError's is ``upstream_error``).
    """
    if isinstance(exc, UpstreamTimeout):
        return LeaseOutcome.TIMEOUT
    if isinstance(exc, BadRequest | FileRejected):
        return LeaseOutcome.BAD_REQUEST
    return LeaseOutcome(exc.code)


async def _content_filter_as_done(events: AsyncIterator[KimiEvent]) -> AsyncIterator[KimiEvent]:
    """Kimi's content filter ends the answer (finish_reason "content_filter" and a notice), not the
    request: the client keeps what it was given, as OpenAI's own filter does."""
    try:
        async for event in events:
            yield event
    except ContentFiltered:
        yield Done(finish_reason="content_filter")


class Attempt:
    """One account's try at the answer: lease, session, the open upstream stream, the chat it made."""

    def __init__(self, plan: Plan, lease: Lease, account: KimiAccount) -> None:
        self.plan = plan
        self.lease = lease
        self.account = account
        self.session: KimiSession = session_for(account)
        self.turn_cm: AbstractAsyncContextManager[AsyncIterator[KimiEvent]] | None = None
        self.events: AsyncIterator[KimiEvent] | None = None
        self.chat_id = plan.continued.chat_id if plan.continued else ""
        self.conversation_id: int | None = plan.continued.conversation_id if plan.continued else None
        self.recording: asyncio.Task[int] | None = None  # the conversation row being written
        self.generated = False  # the upstream produced answer content (the turn is not refundable)
        self.ignored_flags: list[str] = []  # request flags this account's protocol does not have
        self.pending: asyncio.Future[KimiEvent] | None = None  # a read begun before the response started
        self.closed = False

    async def open(self) -> list[KimiEvent]:
        """Send the turn and read up to the first content event; returns the events read so far."""
        files = [await upload_cached(session=self.session, account_id=self.account.pk, blob=b) for b in self.plan.blobs]
        turn = dataclasses.replace(self.plan.turn, files=tuple(files))
        if self.plan.continued:
            turn = dataclasses.replace(
                turn, chat_id=self.plan.continued.chat_id, parent_id=self.plan.continued.parent_message_id or None
            )
        self.ignored_flags = self.session.unsupported_flags(turn)
        if self.ignored_flags:
            log.info("%s: %s ignores %s", self.plan.request_id, self.account.protocol, ", ".join(self.ignored_flags))
        self.turn_cm = self.session.turn(turn)
        self.events = _content_filter_as_done(await self.turn_cm.__aenter__())
        return await self._read_to_first_content()

    async def _read_to_first_content(self) -> list[KimiEvent]:
        """Read until the first content event, so failures before it can fail over.

        Once the upstream has accepted the turn (the chat exists), waiting is bounded by the keep-alive
        interval: a long silence (searching, thinking) then starts the response, with keep-alives,
        instead of leaving the client without headers. The unfinished read is handed over in ``pending``.
        """
        buffered: list[KimiEvent] = []
        assert self.events is not None
        loop = asyncio.get_running_loop()
        patience_until: float | None = None
        while True:
            # Held in ``pending`` while it runs, so close() can cancel it if we are cancelled here.
            step = self.pending = asyncio.ensure_future(anext(self.events))
            timeout = None if patience_until is None else max(0.0, patience_until - loop.time())
            done, _ = await asyncio.wait({step}, timeout=timeout)
            if not done:
                return buffered
            self.pending = None
            try:
                event = step.result()
            except StopAsyncIteration:
                return buffered
            await self.observe(event)
            if isinstance(event, ChatCreated) and patience_until is None:
                patience_until = loop.time() + settings.KIMIPROXY_KEEPALIVE_SECONDS
            if isinstance(event, Heartbeat | ChatCreated):
                continue
            buffered.append(event)
            return buffered

    async def observe(self, event: KimiEvent) -> None:
        """Bookkeeping every event passes through: record the chat, note that generation began."""
        if isinstance(event, ChatCreated):
            known = self.conversation_id is not None or self.recording is not None
            if not known or event.chat_id != self.chat_id:
                await self.recorded_conversation()  # a previous record (if any) finishes first
                self.chat_id = event.chat_id
                # Written while the answer goes on (a tracked task: it completes even if the request is
                # cancelled); every settlement awaits it through recorded_conversation().
                record = conversation_record_async(
                    account_id=self.account.pk,
                    chat_id=event.chat_id,
                    api_key_id=self.plan.caller.api_key_id,
                    owner_hash=self.plan.caller.owner_for(account_token_hash=self.account.token_hash),
                    request_id=self.plan.request_id,
                )
                self.recording = lifecycle.spawn(record, name=f"record-{self.plan.request_id}")
        elif not isinstance(event, Heartbeat | Done):
            self.generated = True

    async def recorded_conversation(self) -> int | None:
        """The id of this attempt's conversation row, once written (None: no chat, or the write failed)."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                self.conversation_id = await recording
            except Exception:
                log.exception("%s: recording upstream chat %s failed", self.plan.request_id, self.chat_id)
        return self.conversation_id

    async def close(self) -> None:
        """Close the upstream stream (idempotent). Never raises: the answer is already decided."""
        if self.closed or self.turn_cm is None:
            self.closed = True
            return
        self.closed = True
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
        try:
            await self.turn_cm.__aexit__(None, None, None)
        except Exception as exc:  # closing a broken stream may fail; the outcome is recorded elsewhere
            log.debug("closing upstream stream failed: %r", exc)


async def attempt_abandon(attempt: Attempt, exc: KimiError) -> None:
    """Settle a failed attempt during failover: close, release the lease, clean up its chat."""
    await attempt.close()
    conversation_id = await attempt.recorded_conversation()
    refund = exc.refundable and not attempt.generated
    await db_call(
        _release_failed_attempt,
        lease=attempt.lease,
        outcome=lease_outcome(exc),
        refund=refund,
        retry_after=getattr(exc, "retry_after", None),
        message=exc.message,
        conversation_id=conversation_id,
        keep=attempt.plan.continued is not None,
    )
    slot_waiters().wake_one()
    if conversation_id is not None and attempt.plan.continued is None:
        delete = conversation_delete_upstream(conversation_id=conversation_id, known=(attempt.account, attempt.chat_id))
        lifecycle.spawn(delete, name="delete-chat")


def _release_failed_attempt(
    *,
    lease: Lease,
    outcome: LeaseOutcome,
    refund: bool,
    retry_after: float | None,
    message: str,
    conversation_id: int | None,
    keep: bool,
) -> None:
    with transaction.atomic():
        lease_release(lease=lease, outcome=outcome, refund=refund, retry_after=retry_after, message=message)
        if conversation_id is not None:
            conversation_settle(conversation_id=conversation_id, keep=keep)


class AttemptCancelled(KimiError):
    """How an attempt is settled when its request was cancelled (the client went away) mid-open."""

    code = LeaseOutcome.CLIENT_CLOSED.value
    refundable = True
