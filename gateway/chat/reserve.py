"""Reserve an account for one request: waiting while accounts are only busy, and failover between them.

``reserve_waiting`` takes a lease (one statement on PostgreSQL's event-loop pool, gateway/db/eventloop.py;
the ORM reference elsewhere, accounts/pool.py) or says why no account can serve. ``Failover`` keeps the
accounts one request has tried: a retryable upstream failure before the first byte reached the client
releases that lease (refunded when the upstream did no work), the pool rules mark the account, and
another account is tried, up to ``KIMIPROXY_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from accounts.models import KimiAccount
from accounts.pool import Lease, NoAccountAvailable, account_reserve, account_unavailable, pg
from gateway.chat.attempt import Attempt, attempt_abandon
from gateway.chat.turn import Job
from gateway.chat.waiting import slot_waiters
from gateway.db import eventloop, run
from gateway.db.threads import db_call
from gateway.kimi.base import AuthError, KimiError, RateLimited
from gateway.openai.errors import (
    AuthenticationFailed,
    ConversationUnavailable,
    GatewayError,
    PoolBusy,
    RateLimitExceeded,
    gateway_error_from_kimi,
    upstream_rate_limited,
)

log = logging.getLogger(__name__)


def passthrough_refused() -> GatewayError:
    """A pass-through caller's tokens are its API key: Kimi refusing them is a 401, as an unknown key is."""
    return AuthenticationFailed(
        "Kimi refused the token sent as the API key (pass-through): it is expired, revoked or not a Kimi token."
    )


# How often a waiting request re-checks the pool for slots freed by other processes.
CROSS_PROCESS_POLL_SECONDS = 0.25


def _reservable_ids(job: Job) -> tuple[int, ...] | None:
    """The accounts this request may use: its conversation's, its pass-through tokens', or the pool (None)."""
    if job.continued is not None:
        return (job.continued.account_id,)
    return job.caller.passthrough_account_ids or None


def _reserve(job: Job, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    lease = account_reserve(account_ids=_reservable_ids(job), exclude=exclude, request_id=job.request_id)
    return lease, lease.account or KimiAccount.objects.get(pk=lease.account_id)


async def _reserve_once(job: Job, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    """One reservation: on PostgreSQL one statement (accounts/pool/pg.py; gateway/db/run.py chooses where
    it runs), elsewhere the ORM reference in a worker thread. Raises ``NoAccountAvailable`` (saying why,
    which takes the ORM) when no account can take the turn."""
    if eventloop.is_postgresql():
        account_ids = _reservable_ids(job)
        statement = pg.reserve_statement(
            now=timezone.now(), request_id=job.request_id, protocol=None, account_ids=account_ids, exclude=exclude
        )
        lease = pg.reserved_lease(await run.fetchone(*statement))
        if lease is not None:
            assert lease.account is not None  # the statement returns the row it updated
            return lease, lease.account
        raise await db_call(account_unavailable, account_ids=account_ids, exclude=exclude)
    return await db_call(_reserve, job, exclude)


async def reserve_waiting(job: Job, exclude: set[int]) -> tuple[Lease, KimiAccount]:
    """Reserve an account, waiting (up to ``KIMIPROXY_QUEUE_TIMEOUT``) while accounts are only busy.

    Waiting requests queue in this process and are woken one at a time as leases are released here
    (gateway/chat/waiting.py); a short poll interval catches releases in other processes. The wait is never
    a blocked worker thread: the releases that free a slot need those threads too.
    """
    deadline = time.monotonic() + settings.KIMIPROXY_QUEUE_TIMEOUT
    while True:
        try:
            return await _reserve_once(job, exclude)
        except NoAccountAvailable as exc:
            left = deadline - time.monotonic()
            if exc.reason != "busy" or left <= 0:
                raise
            await slot_waiters().wait(min(CROSS_PROCESS_POLL_SECONDS, left))


def no_account_error(exc: NoAccountAvailable, *, continued: bool, passthrough: bool = False) -> GatewayError:
    if passthrough and not continued and exc.reason == "invalid":
        return passthrough_refused()  # Kimi refused each of the caller's tokens before: theirs to renew
    if continued and exc.reason in ("invalid", "disabled"):
        return ConversationUnavailable(
            f"The account holding this conversation cannot serve it any more ({exc.reason}); start a new conversation."
        )
    retry_after = None
    if exc.retry_at is not None:
        retry_after = max(1.0, (exc.retry_at - timezone.now()).total_seconds())
    error = PoolBusy if exc.reason == "busy" else RateLimitExceeded
    return error(
        f"No Kimi account can serve this request now ({exc.reason}).",
        retry_after=retry_after if retry_after is not None else 60.0,
    )


class Failover:
    """The accounts one request has tried: how many attempts, which to skip, the last failure, and the
    attempts settled on the way (their drift goes with the request's final write)."""

    def __init__(self, job: Job) -> None:
        self.exclude: set[int] = set()
        self.settled: list[Attempt] = []
        self.attempts = 0
        self.last_error: KimiError | None = None
        self.limited_until: datetime | None = None
        self.max_attempts = 1 if job.continued else settings.KIMIPROXY_MAX_ATTEMPTS
        self.passthrough = bool(job.caller.passthrough_account_ids)

    async def may_retry_after(self, attempt: Attempt, exc: KimiError) -> bool:
        """Settle a failed attempt; True when another account may be tried, False when this was the last."""
        log.info("attempt %s on %s failed: %s", self.attempts, attempt.account.name, exc.code)
        await attempt_abandon(attempt, exc)
        self.settled.append(attempt)
        self.last_error = exc
        self.exclude.add(attempt.account.pk)
        if isinstance(exc, RateLimited):
            # The pool has just decided how long the account is exhausted (its reset time); the client's
            # Retry-After says the same (one small read, on this rare path only).
            until = await db_call(_cooldown_of, attempt.account.pk)
            if until is not None and (self.limited_until is None or until < self.limited_until):
                self.limited_until = until
        return exc.retryable and self.attempts < self.max_attempts

    def final_error(self, *, retry_at: datetime | None = None) -> GatewayError:
        """The client's error after the last failed attempt. After rate limits, ``Retry-After`` is when
        the pool frees its first account (``retry_at``, from the pool) or else when the first refusing
        account is back."""
        assert self.last_error is not None
        at = retry_at or self.limited_until
        if isinstance(self.last_error, RateLimited) and at is not None:
            return upstream_rate_limited(retry_after=max(1.0, (at - timezone.now()).total_seconds()))
        if self.passthrough and isinstance(self.last_error, AuthError):
            return passthrough_refused()  # the caller's own token is what Kimi refused: theirs to fix
        return gateway_error_from_kimi(self.last_error)


def _cooldown_of(account_id: int) -> datetime | None:
    return KimiAccount.objects.filter(pk=account_id).values_list("cooldown_until", flat=True).first()
