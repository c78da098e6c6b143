"""Server-sent events for a streaming completion: the async iterator behind StreamingHttpResponse.

Django's ASGI handler cancels the response when the client disconnects and may never start (or never
close) the body iterator. So the final write does not live in this generator's ``finally`` alone: the
``Finisher`` spawns one tracked task, from here on every exit path and from the response's ``close()``,
whichever comes first, and that task cannot be cancelled by the client going away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.conf import settings

from gateway.chat.deadlines import Deadline
from gateway.chat.finish import Finisher, ending_client_closed, ending_for_error
from gateway.kimi.base import Done, Heartbeat, KimiError, KimiEvent
from gateway.openai.chunks import ReplyAssembler, error_chunk
from gateway.openai.errors import GatewayError, gateway_error_from_kimi

log = logging.getLogger(__name__)
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def with_keepalive(events: AsyncIterator[KimiEvent], interval: float) -> AsyncIterator[KimiEvent]:
    """Yield ``events``, and a ``Heartbeat`` of our own whenever nothing arrived for ``interval`` seconds.

    One pump task reads the upstream into a small bounded queue (backpressure for slow clients), so
    the upstream iterator is never interrupted by our keep-alive timer, and stops when we do.
    """
    queue: asyncio.Queue[KimiEvent | Exception | None] = asyncio.Queue(maxsize=64)  # None: the end

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which raises it in its own task
            await queue.put(exc)

    loop = asyncio.get_running_loop()
    task = loop.create_task(pump())
    # One lazily re-armed timer for all the gets (gateway/chat/deadlines.py): asyncio.timeout per get cost
    # ~11 us each, and wait_for on Python 3.11 wraps every get in a new task.
    deadline = Deadline()
    try:
        while True:
            try:
                item = await deadline.wait(queue.get(), loop.time() + interval)
            except TimeoutError:
                yield Heartbeat()
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        deadline.close()
        if not task.done():
            task.cancel()


class SseBody:
    """The response body: chunks from the assembler as SSE lines, ending with ``[DONE]``.

    ``close()`` is registered by Django as a resource closer, so a response whose body was never
    iterated still finishes its request.
    """

    def __init__(
        self,
        *,
        finisher: Finisher,
        assembler: ReplyAssembler,
        events: AsyncIterator[KimiEvent],
    ) -> None:
        self.finisher = finisher
        self.assembler = assembler
        self.events = events

    def close(self) -> None:
        self.finisher.finish(ending_client_closed())  # no-op when the body already finished

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body()

    async def _body(self) -> AsyncIterator[bytes]:
        finisher, asm = self.finisher, self.assembler
        ending = ending_client_closed()
        try:
            async for item in with_keepalive(self.events, settings.KIMIPROXY_KEEPALIVE_SECONDS):
                if isinstance(item, Heartbeat):
                    yield KEEPALIVE
                    continue
                chunks = asm.feed(item)
                if chunks and finisher.first_token_at is None:
                    finisher.first_token_at = time.monotonic()
                for chunk in chunks:
                    yield sse(chunk)
                if isinstance(item, Done):
                    finisher.parent_message_id = item.message_id or ""
                if isinstance(item, Done) or (asm.finished and not finisher.plan.keep):
                    break  # a kept chat is read to its Done: its message id is the next parent_id
            if not asm.finished:  # the upstream ended the turn without a Done (cannot happen today)
                for chunk in asm.feed(Done()):
                    yield sse(chunk)
            yield DONE
            ending = finisher.success_ending()
        except KimiError as exc:
            # After the first byte there is no failover: say what happened, then end the stream properly.
            error = gateway_error_from_kimi(exc)
            ending = ending_for_error(error, cause=exc)
            yield sse(error_chunk(error))
            yield DONE
        except Exception:
            # A bug of ours: still end the stream properly and record it, never a silent cut.
            log.exception("stream %s failed", finisher.plan.request_id)
            error = GatewayError("Internal error in the gateway while streaming.")
            ending = ending_for_error(error)
            yield sse(error_chunk(error))
            yield DONE
        finally:
            finisher.record_stats(asm)
            finisher.finish(ending)
