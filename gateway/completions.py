"""One chat completion, orchestrated: accept -> reserve -> open upstream -> stream -> finish.

Database work per request (no connection is held while the upstream answers)::

    accept      log row + per-key limits            one transaction   (before the upstream call)
    reserve     lease on an account                 one transaction   (before the upstream call)
    chat id     conversation row                    one short write   (when the upstream chat id arrives)
    finish      final log + lease release + settle  one transaction   (after the answer, in a tracked task)

Failover: a retryable upstream failure before the first byte reached the client releases that lease
(refunded when the upstream did no work), marks the account as the pool rules say, and tries another
account, up to ``KIMIPROXY_MAX_ATTEMPTS``. Every upstream chat created on the way is recorded and deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import KimiAccount
from accounts.pool import Lease, NoAccountAvailable, account_reserve, lease_release
from gateway import lifecycle
from gateway.callers import Caller
from gateway.choices import Outcome
from gateway.conversations import (
    ContinuedConversation,
    conversation_delete_upstream,
    conversation_record,
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
from gateway.logs import ConversationSettlement, LeaseSettlement, LogFinish, request_finish
from gateway.openai.errors import (
    ConversationUnavailable,
    GatewayError,
    RateLimitExceeded,
    gateway_error_from_kimi,
)
from gateway.waiting import slot_waiters

log = logging.getLogger(__name__)
# How often a waiting request re-checks the pool for slots freed by other processes.
CROSS_PROCESS_POLL_SECONDS = 0.25


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


def lease_outcome(exc: KimiError) -> str:
    """The pool's name for how an attempt ended (accounts.pool.lease_release outcomes)."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, BadRequest | FileRejected):
        return "bad_request"
    return exc.code


def log_outcome(status: int) -> str:
    if status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status < 500:
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR


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
            if self.conversation_id is None or event.chat_id != self.chat_id:
                self.chat_id = event.chat_id
                self.conversation_id = await db_call(
                    conversation_record,
                    account_id=self.account.pk,
                    chat_id=event.chat_id,
                    api_key_id=self.plan.caller.api_key_id,
                    owner_hash=self.plan.caller.owner_for(account_token_hash=self.account.token_hash),
                    request_id=self.plan.request_id,
                )
        elif not isinstance(event, Heartbeat | Done):
            self.generated = True

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
    refund = exc.refundable and not attempt.generated
    await db_call(
        _release_failed_attempt,
        lease=attempt.lease,
        outcome=lease_outcome(exc),
        refund=refund,
        retry_after=getattr(exc, "retry_after", None),
        message=exc.message,
        conversation_id=attempt.conversation_id,
        keep=attempt.plan.continued is not None,
    )
    slot_waiters().wake_one()
    if attempt.conversation_id is not None and attempt.plan.continued is None:
        delete = conversation_delete_upstream(
            conversation_id=attempt.conversation_id, known=(attempt.account, attempt.chat_id)
        )
        lifecycle.spawn(delete, name="delete-chat")


def _release_failed_attempt(
    *,
    lease: Lease,
    outcome: str,
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


def _reserve(plan: Plan, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    account_ids: tuple[int, ...] | None = None
    if plan.continued is not None:
        account_ids = (plan.continued.account_id,)
    elif plan.caller.passthrough_account_ids:
        account_ids = plan.caller.passthrough_account_ids
    lease = account_reserve(account_ids=account_ids, exclude=exclude, request_id=plan.request_id)
    return lease, lease.account or KimiAccount.objects.get(pk=lease.account_id)


async def reserve_waiting(plan: Plan, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    """Reserve an account, waiting (up to ``KIMIPROXY_QUEUE_TIMEOUT``) while accounts are only busy.

    Waiting requests queue in this process and are woken one at a time as leases are released here
    (gateway/waiting.py); a short poll interval catches releases in other processes. The wait is never
    a blocked worker thread: the releases that free a slot need those threads too.
    """
    deadline = time.monotonic() + settings.KIMIPROXY_QUEUE_TIMEOUT
    while True:
        try:
            return await db_call(_reserve, plan, exclude)
        except NoAccountAvailable as exc:
            left = deadline - time.monotonic()
            if exc.reason != "busy" or left <= 0:
                raise
            await slot_waiters().wait(min(CROSS_PROCESS_POLL_SECONDS, left))


def _no_account_error(exc: NoAccountAvailable, *, continued: bool) -> GatewayError:
    if continued and exc.reason in ("invalid", "disabled"):
        return ConversationUnavailable(
            f"The account holding this conversation cannot serve it any more ({exc.reason}); start a new conversation."
        )
    retry_after = None
    if exc.retry_at is not None:
        retry_after = max(1.0, (exc.retry_at - timezone.now()).total_seconds())
    return RateLimitExceeded(
        f"No Kimi account can serve this request now ({exc.reason}).",
        retry_after=retry_after if retry_after is not None else 60.0,
    )


class Failover:
    """The accounts one request has tried: how many attempts, which to skip, the last failure."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.exclude: set[int] = set()
        self.attempts = 0
        self.last_error: KimiError | None = None
        self.max_attempts = 1 if plan.continued else settings.KIMIPROXY_MAX_ATTEMPTS

    async def give_up_on(self, attempt: Attempt, exc: KimiError) -> bool:
        """Settle a failed attempt; True when another account may be tried."""
        log.info("attempt %s on %s failed: %s", self.attempts, attempt.account.name, exc.code)
        await attempt_abandon(attempt, exc)
        self.last_error = exc
        self.exclude.add(attempt.account.pk)
        return exc.retryable and self.attempts < self.max_attempts

    def final_error(self) -> GatewayError:
        assert self.last_error is not None
        return gateway_error_from_kimi(self.last_error)


async def reply_open(plan: Plan, failover: Failover) -> tuple[Attempt, list[KimiEvent]]:
    """Open the upstream answer, failing over between accounts; returns the attempt and the events
    read up to the first content. Raises GatewayError (mapped for the wire) when none could answer.
    """
    while failover.attempts < failover.max_attempts:
        try:
            lease, account = await reserve_waiting(plan, failover.exclude)
        except NoAccountAvailable as exc:
            if failover.last_error is not None:
                raise failover.final_error() from None
            raise _no_account_error(exc, continued=plan.continued is not None) from None
        failover.attempts += 1
        attempt = Attempt(plan, lease, account)
        try:
            return attempt, await attempt.open()
        except KimiError as exc:
            if not await failover.give_up_on(attempt, exc):
                break
        except BaseException:
            # Cancelled (client went away) or a bug: settle this attempt in the background, re-raise.
            lifecycle.spawn(attempt_abandon(attempt, _Cancelled()), name="abandon-attempt")
            raise
    raise failover.final_error()


class _Cancelled(KimiError):
    code = "client_closed"
    refundable = True


@dataclasses.dataclass
class Ending:
    """How the request ended, for the final log write."""

    status: int
    outcome: str
    error_code: str = ""
    error_message: str = ""
    lease_outcome: str = "ok"
    refund: bool = False
    retry_after: float | None = None


class Finisher:
    """Writes the final state of an accepted request exactly once, even when the request is cancelled.

    ``finish`` never awaits: it spawns one tracked task that closes the upstream stream, writes the log,
    releases the lease and settles the conversation in one transaction, then deletes the chat upstream.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.attempt: Attempt | None = None
        self.failover: Failover | None = None
        self.first_token_at: float | None = None
        self.stats: dict[str, Any] = {}
        self.parent_message_id = ""
        self.task: asyncio.Task[None] | None = None

    def record_stats(self, assembler: Any) -> None:
        """What the reply produced, for the log row (read from the OpenAI-side assembler)."""
        self.stats = {
            "completion_chars": assembler.text_chars,
            "prompt_tokens": assembler.prompt_tokens,
            "completion_tokens": assembler.completion_tokens,
            "answer_preview": assembler.content[:200],
        }

    @staticmethod
    def success_ending() -> Ending:
        return Ending(status=200, outcome=Outcome.OK)

    def finish(self, ending: Ending) -> asyncio.Task[None]:
        if self.task is None:
            latency = int((time.monotonic() - self.plan.started) * 1000)
            self.task = lifecycle.spawn(self._write(ending, latency), name=f"finish-{self.plan.request_id}")
        return self.task

    async def _write(self, ending: Ending, latency_ms: int) -> None:
        attempt = self.attempt
        if attempt is not None:
            await attempt.close()
        ttft = int((self.first_token_at - self.plan.started) * 1000) if self.first_token_at else None
        finish = LogFinish(
            status_code=ending.status,
            outcome=ending.outcome,
            error_code=ending.error_code,
            error_message=ending.error_message,
            latency_ms=latency_ms,
            ttft_ms=ttft,
            attempts=self.failover.attempts if self.failover else 0,
            account_id=attempt.account.pk if attempt else None,
            upstream_chat_id=attempt.chat_id if attempt else "",
            flags=[*self.plan.flags, *(f"ignored:{f}" for f in attempt.ignored_flags)]
            if attempt and attempt.ignored_flags
            else None,
            **self.stats,
        )
        lease = conversation = None
        if attempt is not None:
            lease = LeaseSettlement(
                lease=attempt.lease,
                outcome=ending.lease_outcome,
                refund=ending.refund and not attempt.generated,
                retry_after=ending.retry_after,
                message=ending.error_message,
            )
            if attempt.conversation_id is not None:
                keep = self.plan.keep and ending.outcome in (Outcome.OK,)
                keep = keep or self.plan.continued is not None
                conversation = ConversationSettlement(
                    conversation_id=attempt.conversation_id, keep=keep, parent_message_id=self.parent_message_id
                )
        if attempt is None and self.plan.continued is not None:
            # No account could serve the kept conversation: it stays kept for a later try.
            conversation = ConversationSettlement(conversation_id=self.plan.continued.conversation_id, keep=True)
        await db_call(request_finish, log_id=self.plan.log_id, finish=finish, lease=lease, conversation=conversation)
        if lease is not None:
            slot_waiters().wake_one()
        if conversation is not None and not conversation.keep:
            assert attempt is not None
            await conversation_delete_upstream(
                conversation_id=conversation.conversation_id, known=(attempt.account, attempt.chat_id)
            )


def ending_for_error(error: GatewayError, *, cause: KimiError | None = None) -> Ending:
    return Ending(
        status=error.status,
        outcome=log_outcome(error.status),
        error_code=error.code or "",
        error_message=error.message,
        lease_outcome=lease_outcome(cause) if cause else "ok",
        refund=bool(cause and cause.refundable),
        retry_after=getattr(cause, "retry_after", None),
    )


def ending_client_closed() -> Ending:
    return Ending(
        status=499,
        outcome=Outcome.CLIENT_CLOSED,
        error_code="client_closed",
        error_message="client closed the connection",
        lease_outcome="client_closed",
    )


def upstream_events(attempt: Attempt, buffered: list[KimiEvent]) -> AsyncIterator[KimiEvent]:
    """The buffered events, then the rest of the upstream stream, each passed through ``observe``."""

    async def gen() -> AsyncIterator[KimiEvent]:
        for event in buffered:
            yield event
        if attempt.pending is not None:
            step, attempt.pending = attempt.pending, None
            try:
                event = await step
            except StopAsyncIteration:
                return
            await attempt.observe(event)
            yield event
        assert attempt.events is not None
        async for event in attempt.events:
            await attempt.observe(event)
            yield event

    return gen()
