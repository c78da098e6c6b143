"""gateway/chat/waiting.py: requests waiting for a busy account are woken one at a time, oldest first."""

from __future__ import annotations

import asyncio

from gateway.chat.waiting import SlotWaiters, slot_waiters


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_released_slot_wakes_the_oldest_waiter_only():
    waiters = SlotWaiters()
    first = asyncio.ensure_future(waiters.wait(30))
    await _settle()
    second = asyncio.ensure_future(waiters.wait(30))
    await _settle()
    assert len(waiters) == 2

    waiters.wake_one()
    await _settle()
    assert first.done() and not second.done()
    assert len(waiters) == 1

    waiters.wake_one()
    await asyncio.wait_for(second, 1)
    assert len(waiters) == 0


async def test_a_waiter_nobody_wakes_returns_after_its_timeout_and_leaves_the_queue():
    waiters = SlotWaiters()
    await asyncio.wait_for(waiters.wait(0.01), 2)
    assert len(waiters) == 0


async def test_a_wake_skips_a_waiter_that_was_cancelled():
    waiters = SlotWaiters()
    gone = asyncio.ensure_future(waiters.wait(30))
    await _settle()
    live = asyncio.ensure_future(waiters.wait(30))
    await _settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)

    waiters.wake_one()
    await asyncio.wait_for(live, 1)


async def test_a_wake_with_nobody_waiting_is_not_kept_for_later():
    waiters = SlotWaiters()
    waiters.wake_one()
    late = asyncio.ensure_future(waiters.wait(30))
    await _settle()
    assert not late.done()
    late.cancel()
    await asyncio.gather(late, return_exceptions=True)


def test_each_event_loop_has_its_own_waiters():
    async def mine() -> tuple[SlotWaiters, SlotWaiters]:
        return slot_waiters(), slot_waiters()

    a1, a2 = asyncio.run(mine())
    b1, _ = asyncio.run(mine())
    assert a1 is a2
    assert b1 is not a1
