"""The two shapes of an answer: a JSON ``chat.completion`` (collected) or an SSE stream.

Both open the upstream reply with failover (completions.reply_open). A collected answer can still
fail over after a mid-stream failure, because nothing has reached the client yet; a stream cannot once
its headers are sent, and ends with an error chunk instead (streaming.SseBody).
"""

from __future__ import annotations

import time

from gateway.chat.accept import Accepted
from gateway.chat.finish import Finisher
from gateway.chat.reserve import Failover, reply_open, upstream_events
from gateway.chat.sse import SseBody
from gateway.kimi.base import Done, KimiError
from gateway.openai.chunks import ReplyAssembler


def assembler_for(accepted: Accepted, *, completion_id: str | None = None) -> ReplyAssembler:
    chat, plan, key = accepted.chat, accepted.plan, accepted.api_key
    reasoning = chat.reasoning_format or (key.reasoning_format if key else "field")
    return ReplyAssembler(
        request_id=plan.request_id,
        model=chat.model.requested,
        created=int(time.time()),
        reasoning_format=reasoning,  # type: ignore[arg-type]
        silent=chat.model.silent,
        max_tokens=chat.max_tokens,
        stop=chat.stop,
        include_usage=chat.include_usage,
        prompt_text=plan.prompt_text,
        completion_id=completion_id,
    )


def _conversation_id(accepted: Accepted, chat_id: str) -> str | None:
    """The id a client uses to continue: the upstream chat id, only for kept conversations."""
    return chat_id or None if accepted.plan.keep else None


async def stream_open(accepted: Accepted, finisher: Finisher) -> tuple[SseBody, str | None]:
    """Open the upstream reply (failover happens here, before any byte is sent)."""
    failover = finisher.failover = Failover(accepted.plan)
    attempt, buffered = await reply_open(accepted.plan, failover)
    finisher.attempt = attempt
    conversation_id = _conversation_id(accepted, attempt.chat_id)
    assembler = assembler_for(accepted, completion_id=conversation_id)
    body = SseBody(finisher=finisher, assembler=assembler, events=upstream_events(attempt, buffered))
    return body, conversation_id


async def reply_collect(accepted: Accepted, finisher: Finisher) -> dict[str, object]:
    """The whole answer as a ``chat.completion`` dict, failing over on retryable failures."""
    failover = finisher.failover = Failover(accepted.plan)
    while True:
        attempt, buffered = await reply_open(accepted.plan, failover)
        finisher.attempt = attempt
        conversation_id = _conversation_id(accepted, attempt.chat_id)
        assembler = assembler_for(accepted, completion_id=conversation_id)
        try:
            async for event in upstream_events(attempt, buffered):
                if assembler.feed(event) and finisher.first_token_at is None:
                    finisher.first_token_at = time.monotonic()
                if isinstance(event, Done):
                    finisher.parent_message_id = event.message_id or ""
                if isinstance(event, Done) or (assembler.finished and not accepted.plan.keep):
                    break  # a kept chat is read to its Done: its message id is the next parent_id
        except KimiError as exc:
            finisher.record_stats(assembler)
            finisher.attempt = None
            if await failover.give_up_on(attempt, exc):
                finisher.first_token_at = None
                continue
            raise failover.final_error() from exc
        finisher.record_stats(assembler)
        body = assembler.completion()
        if conversation_id:
            body["conversation_id"] = conversation_id
        return body
