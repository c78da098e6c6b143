"""The end of an accepted request, written exactly once: the upstream chat deleted (unless kept), then
the final log row, lease release and conversation settled in one transaction, from a tracked task the
client going away cannot cancel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from accounts.choices import LeaseOutcome
from gateway import lifecycle
from gateway.attempts import Attempt, Plan, lease_outcome
from gateway.choices import Outcome
from gateway.conversations import chat_delete
from gateway.kimi.base import KimiError
from gateway.logs import ConversationSettlement, LeaseSettlement, LogFinish, request_finish_async
from gateway.openai.errors import GatewayError
from gateway.waiting import slot_waiters

if TYPE_CHECKING:
    from gateway.completions import Failover


def log_outcome(status: int) -> str:
    if status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status < 500:
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR


@dataclasses.dataclass
class Ending:
    """How the request ended, for the final log write."""

    status: int
    outcome: str  # the request log's Outcome (gateway/choices.py)
    error_code: str = ""
    error_message: str = ""
    lease_outcome: LeaseOutcome = LeaseOutcome.OK  # what the pool is told (not ``outcome``, the log's)
    refund: bool = False
    retry_after: float | None = None


class Finisher:
    """Writes the final state of an accepted request exactly once, even when the request is cancelled.

    ``finish`` never awaits: it spawns one tracked task that closes the upstream stream, deletes the chat
    upstream, then writes the log, releases the lease and settles the conversation in one transaction.
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
        conversation_id = None
        if attempt is not None:
            await attempt.close()
            conversation_id = await attempt.recorded_conversation()
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
            if conversation_id is not None:
                keep = self.plan.keep and ending.outcome in (Outcome.OK,)
                keep = keep or self.plan.continued is not None
                conversation = ConversationSettlement(
                    conversation_id=conversation_id, keep=keep, parent_message_id=self.parent_message_id
                )
        if attempt is None and self.plan.continued is not None:
            # No account could serve the kept conversation: it stays kept for a later try.
            conversation = ConversationSettlement(conversation_id=self.plan.continued.conversation_id, keep=True)
        if conversation is not None and not conversation.keep:
            # Delete the chat upstream first, so the final write records the result too (one database
            # step instead of two). Should the process die in between, the log row, lease and chat are
            # each recovered by cleanup_conversations / the lease timeout.
            assert attempt is not None
            error = await chat_delete(attempt.account, attempt.chat_id)
            conversation = dataclasses.replace(conversation, deleted=not error, delete_error=error)
        elif attempt is not None and attempt.chat_id and conversation_id is None and not self.plan.continued:
            await chat_delete(attempt.account, attempt.chat_id)  # its record failed: at least delete it
        await request_finish_async(log_id=self.plan.log_id, finish=finish, lease=lease, conversation=conversation)
        if lease is not None:
            slot_waiters().wake_one()


def ending_for_error(error: GatewayError, *, cause: KimiError | None = None) -> Ending:
    return Ending(
        status=error.status,
        outcome=log_outcome(error.status),
        error_code=error.code or "",
        error_message=error.message,
        lease_outcome=lease_outcome(cause) if cause else LeaseOutcome.OK,
        refund=bool(cause and cause.refundable),
        retry_after=getattr(cause, "retry_after", None),
    )


def ending_client_closed() -> Ending:
    return Ending(
        status=499,
        outcome=Outcome.CLIENT_CLOSED,
        error_code="client_closed",
        error_message="client closed the connection",
        lease_outcome=LeaseOutcome.CLIENT_CLOSED,
    )
