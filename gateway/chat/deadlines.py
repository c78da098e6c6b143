"""A timeout for a long series of awaits: one timer per stream instead of one per await.

Why it exists: a reply is read in ~50 small awaits (one per upstream frame) and streamed in as many
queue reads, each under its own budget. ``asyncio.timeout()`` creates a ``Timeout`` and schedules and
cancels a timer handle every time, which adds up to a visible share of a request's CPU (measured in
bench/README.md, "Numbers behind the code"). ``Deadline`` keeps one timer and re-arms it lazily: a wait that moves
the deadline later only records it; when the timer fires it either re-arms for the newest deadline or,
if that deadline has passed, cancels the waiting task, which then raises ``TimeoutError`` exactly as
``asyncio.timeout`` would (an outside cancellation still propagates as ``CancelledError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """Waits of one task at a time (``wait``), each with its own loop-time deadline; ``close()`` at the end."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the deadline the pending timer fires at
        self._deadline = 0.0  # the current wait's deadline
        self._waiter: asyncio.Task[object] | None = None
        self._expired = False

    async def wait(self, awaitable: Awaitable[T], deadline: float) -> T:
        """Await ``awaitable``; raise ``TimeoutError`` if it is still pending at loop time ``deadline``."""
        task = asyncio.current_task()
        assert task is not None, "Deadline.wait runs inside a task"
        self._waiter, self._deadline, self._expired = task, deadline, False
        if self._timer is None or deadline < self._armed_for:
            self._arm(deadline)
        cancelling = task.cancelling()
        try:
            result = await awaitable
        except asyncio.CancelledError:
            # Ours only if we expired it and nobody else asked for a cancellation meanwhile.
            if self._expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        except BaseException:
            if self._expired:
                task.uncancel()  # the awaitable ended otherwise: withdraw our request (as asyncio.timeout)
            raise
        finally:
            self._waiter = None
        if self._expired:
            task.uncancel()
        return result

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # nothing waits now: the next wait arms a new timer
        if self._deadline > self._armed_for:
            self._arm(self._deadline)  # the deadline moved on since this timer was set
            return
        self._expired = True
        self._waiter.cancel()
