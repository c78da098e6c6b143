"""One chat completion, orchestrated: accept -> reserve -> open upstream -> stream -> finish.

Database work per request (no connection is held while the upstream answers)::

    accept      key + log row (+ per-key limits)    one statement / transaction   (before the upstream call)
    reserve     lease on an account                 one statement / transaction   (before the upstream call)
    chat id     conversation row                    one short write, concurrent   (when the chat id arrives)
    finish      final log + lease release + settle  one statement / transaction   (after the answer and the
                                                                                   chat delete, in a task)

On PostgreSQL the common cases are hand-written SQL (gateway/accept_sql.py, accounts/pool/pg.py,
gateway/finish_sql.py), run on the event loop's own connection pool (gateway/dbasync.py); the ORM
services are the reference and serve SQLite and the rare paths, in worker threads (gateway/dbcall.py).

Failover: a retryable upstream failure before the first byte reached the client releases that lease
(refunded when the upstream did no work), marks the account as the pool rules say, and tries another
account, up to ``KIMIPROXY_MAX_ATTEMPTS``. Every upstream chat created on the way is recorded and deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings
from django.utils import timezone

from accounts.models import KimiAccount
from accounts.pool import Lease, NoAccountAvailable, account_reserve, account_unavailable, pg
from gateway import dbasync, lifecycle
from gateway.attempts import Attempt, AttemptCancelled, Plan, attempt_abandon
from gateway.dbcall import db_call
from gateway.kimi.base import KimiError, KimiEvent
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


def _reservable_ids(plan: Plan) -> tuple[int, ...] | None:
    """The accounts this request may use: its conversation's, its pass-through tokens', or the pool (None)."""
    if plan.continued is not None:
        return (plan.continued.account_id,)
    return plan.caller.passthrough_account_ids or None


def _reserve(plan: Plan, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    lease = account_reserve(account_ids=_reservable_ids(plan), exclude=exclude, request_id=plan.request_id)
    return lease, lease.account or KimiAccount.objects.get(pk=lease.account_id)


async def _reserve_once(plan: Plan, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    """One reservation: on the event loop when it can (gateway/dbasync.py), else in a worker thread.
    Raises ``NoAccountAvailable`` (saying why, which takes the ORM) when no account can take the turn."""
    if dbasync.async_db_enabled():
        account_ids = _reservable_ids(plan)
        statement = pg.reserve_statement(
            now=timezone.now(), request_id=plan.request_id, protocol=None, account_ids=account_ids, exclude=exclude
        )
        lease = pg.reserved_lease(await dbasync.fetchone(*statement))
        if lease is not None:
            assert lease.account is not None  # the statement returns the row it updated
            return lease, lease.account
        raise await db_call(account_unavailable, account_ids=account_ids, exclude=exclude)
    return await db_call(_reserve, plan, exclude)


async def reserve_waiting(plan: Plan, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    """Reserve an account, waiting (up to ``KIMIPROXY_QUEUE_TIMEOUT``) while accounts are only busy.

    Waiting requests queue in this process and are woken one at a time as leases are released here
    (gateway/waiting.py); a short poll interval catches releases in other processes. The wait is never
    a blocked worker thread: the releases that free a slot need those threads too.
    """
    deadline = time.monotonic() + settings.KIMIPROXY_QUEUE_TIMEOUT
    while True:
        try:
            return await _reserve_once(plan, exclude)
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
            lifecycle.spawn(attempt_abandon(attempt, AttemptCancelled()), name="abandon-attempt")
            raise
    raise failover.final_error()


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
