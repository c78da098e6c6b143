"""One account's try at an answer: the open upstream stream, the events it yields, and how a failed
try is settled (lease released, refunded when the upstream did no work, its chat queued for deletion).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from django.conf import settings
from django.db import transaction

from accounts.choices import LeaseOutcome
from accounts.models import KimiAccount
from accounts.pool import Lease, lease_release
from gateway import lifecycle
from gateway.chat.prompt import attach_up_front, history_attachable, repair_turn, upstream_turn
from gateway.chat.settle import LeaseEnd, lease_end_for
from gateway.chat.turn import Job
from gateway.chat.waiting import slot_waiters
from gateway.db.threads import db_call
from gateway.kimi import session_for
from gateway.kimi.base import (
    ChatCreated,
    ContentFiltered,
    ContextTooLong,
    Done,
    Heartbeat,
    KimiError,
    KimiEvent,
    KimiSession,
    ThinkingDelta,
)
from gateway.records.conversations import (
    chat_delete,
    conversation_delete_upstream,
    conversation_record_async,
    conversation_settle,
)
from gateway.records.drift import DriftReport

log = logging.getLogger(__name__)


class Attempt:
    """One account's try at the answer: lease, session, the open upstream stream, the chat it made."""

    def __init__(self, job: Job, lease: Lease, account: KimiAccount) -> None:
        self.job = job
        self.lease = lease
        self.account = account
        self.session: KimiSession = session_for(account)
        self.turn_cm: AbstractAsyncContextManager[AsyncIterator[KimiEvent]] | None = None
        self.events_in: AsyncIterator[KimiEvent] | None = None  # the open upstream stream
        self.chat_id = job.continued.chat_id if job.continued else ""
        self.conversation_id: int | None = job.continued.conversation_id if job.continued else None
        self.recording: asyncio.Task[int] | None = None  # the conversation row being written
        self.generated = False  # the upstream produced answer content (the turn is not refundable)
        self.first_content_at: float | None = None  # time.monotonic() of the first content event
        self.message_id = ""  # the answer's message id, from Done (Connect's next parent_id)
        self.ignored_flags: list[str] = []  # request flags this account's protocol does not have
        self.prompt_flags: list[str] = []  # how the prompt was sent, for the log row (e.g. history_attached)
        self.reply_flags: list[str] = []  # the sink's own flags (client tools), set by the final write
        self.dropped_reasoning = 0  # characters of reasoning the client did not ask for (not shown)
        self.sent_bytes = 0  # the prompt text sent upstream, UTF-8 (a native continuation sends only the new turns)
        self.pending: asyncio.Future[KimiEvent] | None = None  # a read begun before the response started
        self.closed = False

    async def open(self) -> list[KimiEvent]:
        """Send the turn and read up to the first content event; returns the events read so far.

        A prompt refused as too long (protocol doc C.2) is sent once more on this account with its
        earlier history as an attached file (C.9), unless it was sent that way already.
        """
        attach = attach_up_front(self.job)
        try:
            return await self._send(attach_history=attach)
        except ContextTooLong:
            if attach or not history_attachable(self.job):
                raise
            log.info("%s: prompt too long on %s; sending the history as a file", self.job.request_id, self.account.name)
            await self._discard_refused_chat()
            return await self._send(attach_history=True)

    async def _send(self, *, attach_history: bool) -> list[KimiEvent]:
        turn = await upstream_turn(
            self.job, session=self.session, account_id=self.account.pk, attach_history=attach_history
        )
        self.prompt_flags = ["history_attached"] if attach_history else []
        self.sent_bytes = len(turn.text.encode())
        self.ignored_flags = self.session.unsupported_flags(turn)
        if self.ignored_flags:
            log.info("%s: %s ignores %s", self.job.request_id, self.account.protocol, ", ".join(self.ignored_flags))
        self.turn_cm = self.session.turn(turn)
        events = await self.turn_cm.__aenter__()
        self.events_in = self._shown(events, reasons=turn.reasons)
        return await self._read_to_first_content()

    async def follow_up(self, text: str) -> list[KimiEvent]:
        """Send one more turn in this attempt's chat, after its answer (a repair, gateway/chat/repair.py):
        the finished stream is closed, the new one read to its first content like ``open``."""
        await self.close()
        self.closed = False
        turn = repair_turn(self.job, chat_id=self.chat_id, parent_id=self.message_id, text=text)
        self.turn_cm = self.session.turn(turn)
        events = await self.turn_cm.__aenter__()
        self.events_in = self._shown(events, reasons=turn.reasons)
        return await self._read_to_first_content()

    async def _shown(self, events: AsyncIterator[KimiEvent], *, reasons: bool) -> AsyncIterator[KimiEvent]:
        """The upstream's events as the client may see them (one generator layer for both rules, since
        every event of an answer passes through it):

        * Kimi's content filter ends the answer (finish_reason "content_filter" and a notice), not the
          request: the client keeps what it was given, as OpenAI's own filter does.
        * Reasoning the upstream sends although the client did not ask for it is not shown, only counted
          for the request log (kimi-web-protocol.md C.6: the web app hides it too).
        """
        try:
            async for event in events:
                if not reasons and isinstance(event, ThinkingDelta):
                    self.dropped_reasoning += len(event.text)
                    continue
                yield event
        except ContentFiltered:
            yield Done(finish_reason="content_filter")

    def drift_report(self) -> DriftReport | None:
        """What this attempt's upstream sent and the client did not understand (None: nothing), for the
        request's final write: counted in memory while streaming (gateway/kimi/drift.py)."""
        drift = self.session.drift
        if not drift:
            return None
        return DriftReport(account_id=self.account.pk, protocol=self.account.protocol, items=tuple(drift.items()))

    def log_flags(self) -> list[str]:
        """What this attempt adds to the request's log flags: how the prompt was sent, ignored flags,
        hidden reasoning, and the sink's own (client tools: declared count, parse outcome, trailing text)."""
        flags = [*self.prompt_flags, *(f"ignored:{f}" for f in self.ignored_flags)]
        if self.dropped_reasoning:
            flags.append(f"dropped_reasoning:{self.dropped_reasoning}")
        return flags + self.reply_flags

    async def _discard_refused_chat(self) -> None:
        """Close the refused turn and delete the chat it created (in the background), so the retry
        records its own."""
        await self.close()
        self.closed = False
        conversation_id = await self.recorded_conversation()
        if conversation_id is not None:
            delete = conversation_delete_upstream(conversation_id=conversation_id, known=(self.account, self.chat_id))
            lifecycle.spawn(delete, name="delete-chat")
        elif self.chat_id:  # its record failed: at least delete it
            lifecycle.spawn(chat_delete(self.account, self.chat_id), name="delete-chat")
        self.chat_id, self.conversation_id, self.turn_cm, self.events_in = "", None, None, None

    async def _read_to_first_content(self) -> list[KimiEvent]:
        """Read until the first content event, so failures before it can fail over.

        Once the upstream has accepted the turn (the chat exists), waiting is bounded by the keep-alive
        interval: a long silence (searching, thinking) then starts the response, with keep-alives,
        instead of leaving the client without headers. The unfinished read is handed over in ``pending``.
        """
        buffered: list[KimiEvent] = []
        assert self.events_in is not None
        loop = asyncio.get_running_loop()
        patience_until: float | None = None
        while True:
            # Held in ``pending`` while it runs, so close() can cancel it if we are cancelled here.
            step = self.pending = asyncio.ensure_future(anext(self.events_in))
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

    async def events(self, buffered: list[KimiEvent]) -> AsyncIterator[KimiEvent]:
        """The events read by ``open``, then the rest of the upstream stream, each observed once."""
        for event in buffered:
            yield event
        if self.pending is not None:
            step, self.pending = self.pending, None
            try:
                event = await step
            except StopAsyncIteration:
                return
            await self.observe(event)
            yield event
        assert self.events_in is not None
        async for event in self.events_in:
            await self.observe(event)
            yield event

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
                    api_key_id=self.job.caller.api_key_id,
                    owner_hash=self.job.caller.owner_for(account_token_hash=self.account.token_hash),
                    request_id=self.job.request_id,
                )
                self.recording = lifecycle.spawn(record, name=f"record-{self.job.request_id}")
        elif isinstance(event, Done):
            self.message_id = event.message_id or ""
        elif not isinstance(event, Heartbeat):
            self.generated = True
            if self.first_content_at is None:
                self.first_content_at = time.monotonic()

    async def recorded_conversation(self) -> int | None:
        """The id of this attempt's conversation row, once written (None: no chat, or the write failed)."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                self.conversation_id = await recording
            except Exception:
                log.exception("%s: recording upstream chat %s failed", self.job.request_id, self.chat_id)
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
    await db_call(
        _release_failed_attempt,
        lease=attempt.lease,
        end=lease_end_for(exc, generated=attempt.generated),
        conversation_id=conversation_id,
        keep=attempt.job.continued is not None,
    )
    slot_waiters().wake_one()
    if conversation_id is not None and attempt.job.continued is None:
        delete = conversation_delete_upstream(conversation_id=conversation_id, known=(attempt.account, attempt.chat_id))
        lifecycle.spawn(delete, name="delete-chat")


def _release_failed_attempt(*, lease: Lease, end: LeaseEnd, conversation_id: int | None, keep: bool) -> None:
    with transaction.atomic():
        lease_release(lease=lease, **end.release_kwargs())
        if conversation_id is not None:
            conversation_settle(conversation_id=conversation_id, keep=keep)


class AttemptCancelled(KimiError):
    """How an attempt is settled when its request was cancelled (the client went away) mid-open."""

    code = LeaseOutcome.CLIENT_CLOSED.value
    refundable = True
