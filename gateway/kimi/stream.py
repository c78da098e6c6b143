"""Reading one upstream response: sending with typed timeouts, and the decode -> translate pump.

Shared by both protocol clients. ``send()`` maps transport failures to our error tree; ``EventStream``
reads the body chunk by chunk under three budgets (protocol doc 2.14):

* first byte — from sending the request to the first body byte (``FirstByteTimeout``);
* idle — no bytes at all; any bytes, heartbeats included, reset it (``IdleTimeout``);
* no progress — no text/thinking/tool frame; heartbeats do not reset it (``NoProgressTimeout``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

import httpx
from django.conf import settings

from gateway.chat.deadlines import Deadline
from gateway.kimi.base import (
    ConnectTimeout,
    FirstByteTimeout,
    IdleTimeout,
    KimiError,
    KimiEvent,
    NoProgressTimeout,
    ProtocolError,
    Unavailable,
)
from gateway.kimi.transport.http import UpstreamHTTP, UpstreamResponse

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)


class Decoder(Protocol[Item]):
    def decode(self, chunk: bytes) -> list[Item]: ...
    def flush(self) -> list[Item]: ...


class Translator(Protocol[Item_contra]):
    progress: int

    def feed(self, item: Item_contra) -> list[KimiEvent]: ...
    def finish(self) -> list[KimiEvent]: ...


async def send(http: UpstreamHTTP, request: Any, *, stream: bool, budget: float | None = None) -> UpstreamResponse:
    """Send ``request``; the response (headers, or the whole body when not streaming) must arrive
    within ``budget`` seconds, by default the first-byte timeout."""
    try:
        async with asyncio.timeout(budget or settings.KIMIPROXY_FIRST_BYTE_TIMEOUT):
            return await http.send(request, stream=stream)
    except TimeoutError:
        raise FirstByteTimeout("no response from upstream within the first-byte timeout") from None
    except httpx.ConnectTimeout:
        raise ConnectTimeout("could not connect to upstream in time") from None
    except httpx.TimeoutException:
        raise FirstByteTimeout("upstream did not answer in time") from None
    except httpx.TransportError as exc:
        raise Unavailable(f"upstream connection failed: {type(exc).__name__}") from None


class EventStream(Generic[Item]):
    """Async iterator of events from one streaming response. ``prime()`` reads until the first event
    (so failures reported at the start surface when the turn opens); an error met after some events
    is raised once the events before it have been consumed."""

    def __init__(
        self,
        response: UpstreamResponse,
        decoder: Decoder[Item],
        translator: Translator[Item],
        *,
        sent_at: float | None = None,
    ) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()
        self._decoder = decoder
        self._translator = translator
        self._queue: collections.deque[KimiEvent] = collections.deque()
        self._error: KimiError | None = None
        self._eof = False
        self._got_bytes = False
        loop = asyncio.get_running_loop()
        self._now = loop.time
        self._deadline = Deadline()  # one timer for every read of this stream (gateway/chat/deadlines.py)
        self._progress_at = self._now()
        # The first-byte budget runs from when the request was sent (``sent_at``, loop time).
        self._first_byte_by = (sent_at or self._progress_at) + settings.KIMIPROXY_FIRST_BYTE_TIMEOUT

    async def prime(self) -> None:
        while not self._queue and not self._eof and self._error is None:
            await self._fill()
        if self._error is not None and not self._queue:
            raise self._error

    def __aiter__(self) -> AsyncIterator[KimiEvent]:
        return self

    async def __anext__(self) -> KimiEvent:
        while not self._queue:
            if self._error is not None:
                error, self._error = self._error, None
                self._eof = True
                raise error
            if self._eof:
                raise StopAsyncIteration
            await self._fill()
        return self._queue.popleft()

    async def _fill(self) -> None:
        try:
            chunk = await self._read()
            try:
                if chunk is None:
                    self._eof = True
                    self._feed(self._decoder.flush())
                    self._queue.extend(self._translator.finish())
                else:
                    self._feed(self._decoder.decode(chunk))
            except KimiError as exc:
                self._error = exc
        finally:
            if self._eof or self._error is not None:
                self._deadline.close()  # no read will wait again: drop the stream's timer now

    def _feed(self, items: list[Item]) -> None:
        for item in items:
            before = self._translator.progress
            self._queue.extend(self._translator.feed(item))
            if self._translator.progress != before:
                self._progress_at = self._now()

    async def _read(self) -> bytes | None:
        budget, timeout_error = self._budget()
        try:
            if budget <= 0:
                raise TimeoutError
            chunk = await self._deadline.wait(anext(self._chunks), self._now() + budget)
        except TimeoutError:
            self._eof = True  # the body iterator is unusable after a cancelled read
            raise timeout_error from None
        except StopAsyncIteration:
            return None
        except httpx.TransportError as exc:
            # A reset or an unterminated chunked body: the stream was cut (doc 2.16 "EOF without 0x02").
            self._eof = True
            raise ProtocolError(f"upstream stream was cut: {type(exc).__name__}") from None
        self._got_bytes = True
        return chunk

    def _budget(self) -> tuple[float, KimiError]:
        now = self._now()
        if not self._got_bytes:
            return self._first_byte_by - now, FirstByteTimeout("no data from upstream within the first-byte timeout")
        no_progress_left = self._progress_at + settings.KIMIPROXY_NO_PROGRESS_TIMEOUT - now
        idle = settings.KIMIPROXY_IDLE_TIMEOUT
        if no_progress_left <= idle:
            return no_progress_left, NoProgressTimeout("upstream made no progress within the timeout")
        return idle, IdleTimeout("upstream sent nothing within the idle timeout")

    async def aclose(self) -> None:
        self._deadline.close()
        await self._response.aclose()
