"""Requests of this process waiting for a busy account, woken one at a time when a lease is released.

Polling the database from every waiting request turns a burst into a storm of reservation attempts
that also starves the releases that would free a slot. Instead a waiter sleeps until this process
releases a lease (``wake_one``), or until a short poll interval passes, which catches releases made by
other processes and replicas.
"""

from __future__ import annotations

import asyncio
import collections


class SlotWaiters:
    """FIFO of waiting requests for one event loop (one per worker process)."""

    def __init__(self) -> None:
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self, timeout: float) -> None:
        """Return when woken, or after ``timeout`` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            if future in self._queue:
                self._queue.remove(future)

    def wake_one(self) -> None:
        """A slot was freed here: give the oldest waiter the first try at it."""
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                return

    def __len__(self) -> int:
        return len(self._queue)


_by_loop: dict[asyncio.AbstractEventLoop, SlotWaiters] = {}


def slot_waiters() -> SlotWaiters:
    """The waiters of the running event loop (a worker process has one loop; tests may run several)."""
    loop = asyncio.get_running_loop()
    waiters = _by_loop.get(loop)
    if waiters is None:
        for stale in [other for other in _by_loop if other.is_closed()]:
            del _by_loop[stale]
        waiters = _by_loop[loop] = SlotWaiters()
    return waiters
