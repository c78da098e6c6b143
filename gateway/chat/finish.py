"""The end of an accepted request, written exactly once: the upstream chat deleted (unless kept), then
the final log row, lease release and conversation settled in one transaction, from a tracked task the
client going away cannot cancel. When an attempt saw upstream shapes it did not understand, their
counts follow in the same task (gateway/records/drift.py): one more write, only for such requests.

An answer that ended before the upstream's (a client tool call: the sink stopped at the block's close)
is first drained here, after the client's response ended: the rest of the upstream answer is read into
the sink without being sent, for at most ``KIMIPROXY_TOOL_DRAIN_SECONDS``, so the upstream turn ends
cleanly and what the model wrote after the call is counted (``trailing_after_tool``) before the chat
is deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings

from gateway import lifecycle
from gateway.chat.attempt import Attempt
from gateway.chat.native import native_state_store, state_fingerprint
from gateway.chat.settle import Ending
from gateway.chat.sink import DrainingSink, ReplyStats
from gateway.chat.turn import Job
from gateway.chat.waiting import slot_waiters
from gateway.choices import Outcome
from gateway.db.threads import db_call
from gateway.kimi.base import Done, KimiError, KimiEvent
from gateway.openai.messages import Message
from gateway.records.conversations import chat_delete
from gateway.records.drift import drift_record
from gateway.records.logs import request_finish_async
from gateway.records.settlements import ConversationSettlement, LeaseSettlement, LogFinish, ToolRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Final:
    """Everything the final write needs, handed over once: how the request ended, the attempt that
    holds the lease (None when none does), the attempts settled before it (failover), and what the
    reply produced."""

    ending: Ending
    attempt: Attempt | None = None
    attempts: int = 0
    stats: ReplyStats = ReplyStats()
    first_token_at: float | None = None
    parent_message_id: str = ""
    settled: tuple[Attempt, ...] = ()
    rest: AsyncIterator[KimiEvent] | None = None  # the upstream answer left to drain into ``tail``
    tail: DrainingSink | None = None  # a sink with log flags of its own (read after the drain)
    repairs: int = 0  # extra upstream turns spent repairing the answer (gateway/chat/repair.py)
    answer: Message | None = None  # the answer as the client got it (native multi-turn's state)


def finish_spawn(job: Job, final: Final) -> asyncio.Task[None]:
    """Start the final write (never awaits). The caller makes sure it runs once per request."""
    latency = int((time.monotonic() - job.started) * 1000)
    return lifecycle.spawn(_write(job, final, latency), name=f"finish-{job.request_id}")


async def _write(job: Job, final: Final, latency_ms: int) -> None:
    attempt, ending = final.attempt, final.ending
    conversation_id = None
    if final.rest is not None and final.tail is not None:
        await _drain(final.rest, final.tail, seconds=settings.KIMIPROXY_TOOL_DRAIN_SECONDS, job=job)
    tools = ToolRecord()
    if attempt is not None and final.tail is not None:
        attempt.reply_flags = final.tail.log_flags()
        tools = final.tail.tool_record()
    if attempt is not None:
        await attempt.close()
        conversation_id = await attempt.recorded_conversation()
    # The answer's message id (the next turn's parent, protocol doc 2.9): an answer that ended at a tool
    # call gets it from the drain, after the reply handed over its Final.
    parent_message_id = final.parent_message_id or (attempt.message_id if attempt else "")
    ttft = int((final.first_token_at - job.started) * 1000) if final.first_token_at else None
    local = attempt is None and job.answered_locally and ending.outcome == Outcome.OK
    finish = LogFinish(
        status_code=ending.status,
        outcome=Outcome.LOCAL if local else ending.outcome,
        error_code=ending.error_code,
        error_message=ending.error_message,
        latency_ms=latency_ms,
        ttft_ms=ttft,
        attempts=final.attempts,
        account_id=attempt.account.pk if attempt else None,
        upstream_chat_id=attempt.chat_id if attempt else "",
        flags=_final_flags(job, attempt),
        tools=tools,
        repairs=final.repairs,
        turn_path=job.native_flag.partition(":")[0],
        prompt_bytes_saved=len(job.prompt_text.encode()) - attempt.sent_bytes if attempt and job.native else 0,
        **dataclasses.asdict(final.stats),
    )
    lease = conversation = None
    native_keep = _native_state_kept(job, final)
    if attempt is not None:
        end = ending.lease_end(generated=attempt.generated)
        lease = LeaseSettlement(lease=attempt.lease, **end.release_kwargs())
        if conversation_id is not None:
            keep = (job.keep and ending.outcome == Outcome.OK) or job.continued is not None or native_keep
            conversation = ConversationSettlement(
                conversation_id=conversation_id, keep=keep, parent_message_id=parent_message_id
            )
    if attempt is None and job.continued is not None:
        # No account could serve the kept conversation: it stays kept for a later try.
        conversation = ConversationSettlement(conversation_id=job.continued.conversation_id, keep=True)
    if conversation is not None and not conversation.keep:
        # Delete the chat upstream first, so the final write records the result too (one database
        # step instead of two). Should the process die in between, the log row, lease and chat are
        # each recovered by cleanup_conversations / the lease timeout.
        assert attempt is not None
        error = await chat_delete(attempt.account, attempt.chat_id)
        conversation = dataclasses.replace(conversation, deleted=not error, delete_error=error)
    elif attempt is not None and attempt.chat_id and conversation_id is None and not job.continued:
        await chat_delete(attempt.account, attempt.chat_id)  # its record failed: at least delete it
    await request_finish_async(log_id=job.log_id, finish=finish, lease=lease, conversation=conversation)
    if job.native_on and conversation is not None and conversation.keep:
        answer = final.answer
        fingerprint = state_fingerprint(turn=job.turn, door=job.door, answer=answer) if native_keep and answer else ""
        await db_call(
            native_state_store,
            conversation_id=conversation.conversation_id,
            fingerprint=fingerprint,
            nonce=job.turn.tool_nonce,
            hint=job.native_hint,
        )
    if lease is not None:
        slot_waiters().wake_one()
    tried = [*final.settled, *([attempt] if attempt is not None else [])]
    reports = [report for report in (a.drift_report() for a in tried) if report is not None]
    if reports:
        await db_call(drift_record, reports=reports)


def _final_flags(job: Job, attempt: Attempt | None) -> list[str] | None:
    """The flags of the final write (None: those written on accept stay)."""
    late = [*([job.native_flag] if job.native_flag else []), *(attempt.log_flags() if attempt else [])]
    return [*job.flags, *late] if late else None


def _native_state_kept(job: Job, final: Final) -> bool:
    """This turn leaves a chat a resent history may continue (gateway/chat/native.py): native mode,
    answered in full, and the upstream chat holds nothing the client did not see."""
    if not job.native_on or final.answer is None or final.ending.outcome != Outcome.OK or final.attempt is None:
        return False
    if final.repairs:  # the chat also holds the answer that was repaired, which the client never saw
        return False
    return not any(flag.startswith("trailing_after_tool") for flag in final.attempt.reply_flags)


async def _drain(events: AsyncIterator[KimiEvent], sink: DrainingSink, *, seconds: float, job: Job) -> None:
    """Read the rest of the answer into the sink (its output is dropped) until Done, the end or the
    time limit; the upstream stream is closed after this either way (``attempt.close``)."""
    try:
        async with asyncio.timeout(seconds):
            async for event in events:
                sink.feed(event)
                if isinstance(event, Done):
                    break
    except TimeoutError:
        log.info("%s: drain after the tool call stopped after %ss", job.request_id, seconds)
    except KimiError as exc:  # the answer is already decided; only the trailing count is incomplete
        log.info("%s: drain after the tool call failed: %r", job.request_id, exc)
    except Exception:  # a bug of ours must not keep the final write from happening
        log.exception("%s: drain after the tool call failed", job.request_id)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception as exc:
                log.debug("closing the drained events failed: %r", exc)
