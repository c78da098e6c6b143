"""Repair turns: one more upstream turn in the same chat when a collected answer is unusable as it
stands, for keys that allow it (``ApiKey.repair_turns``, default 0: the answer goes to the client as
it is).

What needs repairing is the sink's to say (``RepairableSink.repair_message``): for chat completions a
tool call that fails its schema (``call.problems``) or a ``response_format`` answer that is not the
JSON asked for. The pipeline does the rest, the same for every door: it finishes reading the answer
to repair (bounded by ``KIMIPROXY_TOOL_DRAIN_SECONDS``: the chat's next turn needs its message id),
sends the message in that chat on the same account and lease, counts the extra turn (a done ``Turn``
row: the account's window and the key's budget count it) and runs the new answer into the restarted
sink. A repair that cannot be sent leaves the first answer (or its error) as it was. Streamed answers
are never repaired: they reached the client as they came.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from django.conf import settings

from gateway.chat.reply import Reply
from gateway.chat.sink import Sink
from gateway.kimi.base import Done, KimiError, KimiEvent
from gateway.openai.errors import GatewayError

log = logging.getLogger(__name__)


@runtime_checkable
class RepairableSink(Protocol):
    def repair_message(self, error: GatewayError | None) -> str | None:
        """After a collected answer ended (``error``: what the sink raised at its end, if anything):
        the message telling the model what failed and what to answer instead; None: nothing to repair."""
        ...


@dataclasses.dataclass
class Reading:
    """The upstream answer being read: its events (left to drain when the sink ended early) and
    whether its ``Done`` arrived."""

    events: AsyncIterator[KimiEvent] | None = None
    done: bool = False


def repair_message(reply: Reply, sink: Sink, error: GatewayError | None) -> str | None:
    """The repair to send now, or None (streamed, not repairable, no repair turn left, nothing wrong)."""
    key = reply.job.api_key
    if key is None or reply.repairs >= key.repair_turns or sink.streams or reply.attempt is None:
        return None  # the key first: a runtime Protocol check costs more than the rest together
    if not isinstance(sink, RepairableSink):
        return None
    return sink.repair_message(error)


async def repair_open(reply: Reply, sink: Sink, reading: Reading, message: str) -> bool:
    """Finish the answer being repaired, send ``message`` in its chat and restart the sink for the
    answer to it. False: the repair turn could not be sent (the first answer stands)."""
    if reading.events is not None and not reading.done:
        await _finish_reading(reading.events, sink, request_id=reply.job.request_id)
    try:
        await reply.follow_up(message)
    except KimiError as exc:
        log.info("%s: the repair turn could not be sent: %r", reply.job.request_id, exc)
        return False
    reading.events, reading.done = None, False
    sink.start(chat_id=reply.chat_id)
    return True


async def _finish_reading(events: AsyncIterator[KimiEvent], sink: Sink, *, request_id: str) -> None:
    try:
        async with asyncio.timeout(settings.KIMIPROXY_TOOL_DRAIN_SECONDS):
            async for event in events:
                sink.feed(event)  # a collected sink past its end only counts (e.g. text after a call)
                if isinstance(event, Done):
                    return
    except (TimeoutError, KimiError) as exc:  # the repair goes on: it only lacks the parent message id
        log.info("%s: reading the answer to repair stopped: %r", request_id, exc)
