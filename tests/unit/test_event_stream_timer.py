"""EventStream drops its read timer (gateway/chat/deadlines.py) as soon as the stream is over, however it ends.

The protocol clients close the response, not always the EventStream (connect.py closes only the
response when ``prime()`` fails), so the stream itself must not leave a timer armed behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.kimi.base import KimiEvent, ProtocolError, TextDelta
from gateway.kimi.stream import EventStream


class Body:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


class Lines:
    def decode(self, chunk: bytes) -> list[str]:
        return chunk.decode().split()

    def flush(self) -> list[str]:
        return []


class Words:
    """Each word is a text event; the word "bad" is a frame reporting a failure."""

    progress = 0

    def feed(self, item: str) -> list[KimiEvent]:
        if item == "bad":
            raise ProtocolError("upstream reported a failure")
        self.progress += 1
        return [TextDelta(item)]

    def finish(self) -> list[KimiEvent]:
        return []


async def test_the_timer_is_dropped_at_the_end_of_the_stream() -> None:
    stream = EventStream(Body([b"one two"]), Lines(), Words())  # type: ignore[arg-type]
    assert [event async for event in stream] == [TextDelta("one"), TextDelta("two")]
    assert stream._deadline._timer is None


async def test_the_timer_is_dropped_when_the_first_frame_reports_a_failure() -> None:
    stream = EventStream(Body([b"bad", b"never read"]), Lines(), Words())  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        await stream.prime()
    assert stream._deadline._timer is None  # without stream.aclose(), as connect.py's _open does
