"""Open a reply: one request's answer from the upstream, from reservation to the final write.

A ``Reply`` owns what the request holds upstream: the ``Failover`` state, the open ``Attempt`` (its
lease and stream) and the final write. ``open`` reserves an account (waiting while accounts are only
busy), sends the shaped turn and reads up to the first content, failing over between accounts on the
way; ``events`` yields the answer; ``reopen_after`` fails over after a failure mid-answer (only while
nothing reached the client); ``finish`` ends the request, once.

A request the gateway answers itself (``Job.answered_locally``: count_tokens, clients' probes) opens no
attempt: its events are the local text and ``Done``, so the door's sink shapes it like any answer, and
the final write (no lease) logs it as ``local``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from accounts.pool import NoAccountAvailable, extra_turn_record
from gateway import lifecycle
from gateway.chat.attempt import Attempt, AttemptCancelled, attempt_abandon
from gateway.chat.finish import Final, finish_spawn
from gateway.chat.native import native_fallback
from gateway.chat.reserve import Failover, no_account_error, reserve_waiting
from gateway.chat.settle import Ending
from gateway.chat.sink import DrainingSink, ReplyStats
from gateway.chat.turn import Job
from gateway.db.threads import db_call
from gateway.kimi.base import Done, KimiError, KimiEvent, TextDelta
from gateway.openai.messages import Message

log = logging.getLogger(__name__)


class Reply:
    """One request's answer (see the module docstring). Not shared between requests."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.failover = Failover(job)
        self.attempt: Attempt | None = None
        self._buffered: list[KimiEvent] = []
        self._finished: asyncio.Task[None] | None = None
        self.repairs = 0  # repair turns sent (gateway/chat/repair.py)

    @property
    def chat_id(self) -> str:
        return self.attempt.chat_id if self.attempt else ""

    @property
    def first_token_at(self) -> float | None:
        """When the open attempt's answer began (time.monotonic()); None before that."""
        return self.attempt.first_content_at if self.attempt else None

    @property
    def parent_message_id(self) -> str:
        """The open attempt's answer message id, once its Done arrived (the next turn's parent)."""
        return self.attempt.message_id if self.attempt else ""

    async def open(self) -> None:
        """Reserve, send and read up to the first content, failing over between accounts.

        Raises ``GatewayError`` (mapped for the wire) when no account could answer.
        """
        job, failover = self.job, self.failover
        if job.answered_locally:  # no reservation, no upstream call, no turn spent
            self._buffered = [*([TextDelta(job.local_text)] if job.local_text else []), Done()]
            return
        while failover.attempts < failover.max_attempts:
            try:
                lease, account = await reserve_waiting(job, failover.exclude)
            except NoAccountAvailable as exc:
                if job.native is not None and failover.attempts == 0:
                    # The account holding the chat cannot serve now: flatten into a new chat instead.
                    self.job = job = await self._flatten_native("account_unavailable")
                    continue
                if failover.last_error is not None:
                    raise failover.final_error(retry_at=exc.retry_at) from None
                raise no_account_error(
                    exc, continued=job.continued is not None, passthrough=bool(job.caller.passthrough_account_ids)
                ) from None
            failover.attempts += 1
            attempt = Attempt(job, lease, account)
            try:
                self._buffered = await attempt.open()
            except KimiError as exc:
                if not await failover.may_retry_after(attempt, exc):
                    if job.native is None or not exc.retryable:
                        break
                    # The continuation failed where a new chat may not: flatten it on another account.
                    self.job = job = await self._flatten_native("upstream_error")
                continue
            except BaseException:
                # Cancelled (client went away) or a bug: settle this attempt in the background, re-raise.
                lifecycle.spawn(attempt_abandon(attempt, AttemptCancelled()), name="abandon-attempt")
                failover.settled.append(attempt)
                raise
            self.attempt = attempt
            return
        raise self.failover.final_error()

    async def _flatten_native(self, reason: str) -> Job:
        """Serve a native continuation flattened in a new chat after all, with the pool's attempts."""
        job = await native_fallback(self.job, reason)
        self.failover.max_attempts = Failover(job).max_attempts
        return job

    async def reopen_after(self, exc: KimiError) -> None:
        """The open attempt failed mid-answer: settle it and open another (raises ``GatewayError`` when
        no attempt is left). Only for answers nothing of which has reached the client."""
        attempt, self.attempt = self.attempt, None
        assert attempt is not None
        if not await self.failover.may_retry_after(attempt, exc):
            raise self.failover.final_error() from exc
        await self.open()

    async def follow_up(self, text: str) -> None:
        """Send a repair turn in the open attempt's chat (its answer read); ``events`` then yields the
        new answer. The extra turn is counted on the account (and so the key's budget) once sent."""
        attempt = self.attempt
        assert attempt is not None
        self._buffered = await attempt.follow_up(text)
        self.repairs += 1
        await db_call(extra_turn_record, account_id=attempt.account.pk, request_id=self.job.request_id)

    def events(self) -> AsyncIterator[KimiEvent]:
        """The open attempt's events (the attempt notes when the answer began and its message id)."""
        buffered, self._buffered = self._buffered, []
        if self.attempt is None:
            assert self.job.answered_locally
            return _replay(buffered)
        return self.attempt.events(buffered)

    def finish(
        self,
        ending: Ending,
        stats: ReplyStats | None = None,
        *,
        rest: AsyncIterator[KimiEvent] | None = None,
        tail: DrainingSink | None = None,
        answer: Message | None = None,
    ) -> asyncio.Task[None]:
        """Start the final write with this ending; later calls return the same task (the first wins).
        ``rest``: the upstream answer left to drain into ``tail`` (whose log flags are recorded)."""
        if self._finished is None:
            final = Final(
                ending=ending,
                attempt=self.attempt,
                attempts=self.failover.attempts,
                stats=stats or ReplyStats(),
                first_token_at=self.first_token_at,
                parent_message_id=self.parent_message_id,
                settled=tuple(self.failover.settled),
                rest=rest,
                tail=tail,
                repairs=self.repairs,
                answer=answer,
            )
            self._finished = finish_spawn(self.job, final)
        return self._finished


async def _replay(events: list[KimiEvent]) -> AsyncIterator[KimiEvent]:
    for event in events:
        yield event
