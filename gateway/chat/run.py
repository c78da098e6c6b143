"""Run a reply into a sink: the one loop over upstream events, for every front door and wire shape.

Each event goes to the sink; the loop stops at ``Done``, or as soon as the sink's answer is complete
(a kept chat is read to its ``Done``: its message id is the next turn's parent). A failure mid-answer
fails over while nothing has reached the client (a collected sink), and otherwise ends the stream in the
sink's own error shape: never a silent cut. The request's ending is handed to the final write on every
exit path, cancellation included.

Django's ASGI handler cancels the response when the client disconnects and may never start (or never
close) a streaming body, so ``StreamBody.close()`` (a resource closer Django calls) finishes too; the
first of the two wins.

A ``DrainingSink`` whose answer ended early (a tool call) hands the still-open event iterator to the
final write, which drains it (``KIMIPROXY_TOOL_DRAIN_SECONDS``) after the client's response has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from django.conf import settings

from gateway.chat.deadlines import Deadline
from gateway.chat.repair import Reading, repair_message, repair_open
from gateway.chat.reply import Reply
from gateway.chat.settle import Ending, ending_client_closed, ending_for_error, ending_success, internal_error
from gateway.chat.sink import AnswerSink, DrainingSink, Sink
from gateway.choices import Outcome
from gateway.kimi.base import Done, Heartbeat, KimiError, KimiEvent
from gateway.openai.errors import GatewayError, gateway_error_from_kimi

log = logging.getLogger(__name__)


async def run(reply: Reply, sink: Sink) -> AsyncIterator[bytes]:
    """Feed the open reply's events to ``sink``, yielding what it sends; finish the request at the end.

    Raises ``GatewayError`` only for a collected sink (nothing was sent: the door answers with an error).
    """
    ending: Ending = ending_client_closed()
    draining = sink if isinstance(sink, DrainingSink) else None
    reading = Reading()
    try:
        sink.start(chat_id=reply.chat_id)
        while True:
            try:
                async for data in _answer(reply, sink, reading):
                    yield data
            except GatewayError as refused:  # the sink refused the answer at its end
                message = repair_message(reply, sink, refused)
                if message is None:
                    raise
                if not await repair_open(reply, sink, reading, message):
                    raise
                continue
            message = repair_message(reply, sink, None)
            if message is None or not await repair_open(reply, sink, reading, message):
                break
        ending = ending_success()
    except KimiError as exc:
        error = gateway_error_from_kimi(exc)
        ending = ending_for_error(error, cause=exc)
        for data in sink.fail(error):
            yield data
    except GatewayError as error:
        ending = ending_for_error(error)
        if not sink.streams:
            raise
        for data in sink.fail(error):  # the sink refused the answer at its end (e.g. a required tool call)
            yield data
    except Exception:
        if not sink.streams:
            ending = ending_for_error(internal_error())
            raise  # the door logs it and answers with that error
        # A bug of ours: still end the stream properly and record it, never a silent cut.
        log.exception("stream %s failed", reply.job.request_id)
        internal = GatewayError("Internal error in the gateway while streaming.")
        ending = ending_for_error(internal)
        for data in sink.fail(internal):
            yield data
    finally:
        drain = draining is not None and draining.drains and not reading.done and ending.outcome == Outcome.OK
        answer = sink.answer() if isinstance(sink, AnswerSink) and ending.outcome == Outcome.OK else None
        rest = reading.events if drain else None
        reply.finish(ending, sink.stats(), rest=rest, tail=draining, answer=answer)


async def _answer(reply: Reply, sink: Sink, reading: Reading) -> AsyncIterator[bytes]:
    """One answer into the sink, failing over while nothing reached the client; ends with ``close``."""
    while True:
        try:
            reading.events = events = _events(reply, sink)
            async for event in events:
                if isinstance(event, Heartbeat):
                    if sink.streams:
                        yield sink.keepalive()
                    continue
                reading.done = isinstance(event, Done)
                for data in sink.feed(event):
                    yield data
                if reading.done or (sink.finished and not reply.job.keep):
                    break
            break
        except KimiError as exc:
            if sink.streams:
                raise  # after the first byte there is no failover
            await reply.reopen_after(exc)  # raises GatewayError when no account is left
            sink.start(chat_id=reply.chat_id)
    for data in sink.close():
        yield data


def _events(reply: Reply, sink: Sink) -> AsyncIterator[KimiEvent]:
    if sink.streams:
        return with_keepalive(reply.events(), settings.KIMIPROXY_KEEPALIVE_SECONDS)
    return reply.events()


async def collect(reply: Reply, sink: Sink) -> None:
    """Run a collected sink to the end (it sends nothing; its door builds the body from it)."""
    async for _ in run(reply, sink):
        pass


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
    deadline = Deadline()  # one lazily re-armed timer for every get (see gateway/chat/deadlines.py)
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


class StreamBody:
    """A streaming response's body: ``run`` as an async iterator, and ``close()`` for Django.

    ``close()`` is registered by Django as a resource closer, so a response whose body was never
    iterated still finishes its request.
    """

    def __init__(self, reply: Reply, sink: Sink) -> None:
        self.reply, self.sink = reply, sink

    def close(self) -> None:
        self.reply.finish(ending_client_closed())  # no-op when the body already finished

    def __aiter__(self) -> AsyncIterator[bytes]:
        return run(self.reply, self.sink)
