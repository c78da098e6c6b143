"""gateway.chat.deadlines.Deadline: asyncio.timeout's behaviour with one lazily re-armed timer."""

from __future__ import annotations

import asyncio

import pytest

from gateway.chat.deadlines import Deadline


async def value_after(seconds: float, value: str = "done") -> str:
    await asyncio.sleep(seconds)
    return value


async def test_a_wait_that_ends_in_time_returns_its_value() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    assert await deadline.wait(value_after(0.01), loop.time() + 1) == "done"
    deadline.close()


async def test_a_wait_past_its_deadline_raises_timeout_and_leaves_the_task_usable() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadline.wait(value_after(5), started + 0.05)
    assert 0.04 < loop.time() - started < 1
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # our cancellation was withdrawn
    assert await deadline.wait(value_after(0.01, "next"), loop.time() + 1) == "next"  # re-armed
    deadline.close()


async def test_many_short_waits_each_get_their_own_budget() -> None:
    # 20 waits of 20 ms, each with a 50 ms budget: 400 ms in all, far past the first wait's deadline.
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    for _ in range(20):
        assert await deadline.wait(value_after(0.02), loop.time() + 0.05) == "done"
    deadline.close()


async def test_a_deadline_later_than_the_armed_timer_still_expires() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    await deadline.wait(value_after(0), loop.time() + 0.02)  # arms a timer 20 ms out
    started = loop.time()
    with pytest.raises(TimeoutError):  # the timer fires first, re-arms for this wait's deadline, expires
        await deadline.wait(value_after(2), started + 0.1)
    assert 0.09 < loop.time() - started < 1
    deadline.close()


async def test_a_deadline_earlier_than_the_armed_timer_is_kept() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    await deadline.wait(value_after(0), loop.time() + 10)  # arms a timer 10 s out
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadline.wait(value_after(5), started + 0.05)
    assert loop.time() - started < 1
    deadline.close()


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(deadline.wait(value_after(5), loop.time() + 10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline.close()


async def test_an_outside_cancellation_at_the_deadline_is_not_swallowed() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.05
    waiting = asyncio.ensure_future(deadline.wait(value_after(5), when))
    loop.call_at(when, waiting.cancel)  # somebody else cancels in the same loop iteration as our timer
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline.close()


async def test_close_stops_the_timer() -> None:
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    await deadline.wait(value_after(0), loop.time() + 0.05)
    deadline.close()
    assert deadline._timer is None
