"""Process lifecycle: background tasks the process keeps track of, and the shutdown flag.

Deleting an upstream chat after the answer must not delay the client, so it runs as a task; tasks are
kept in a set (never fire-and-forget) and drained on shutdown within ``KIMIPROXY_SHUTDOWN_GRACE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class _State:
    """Per-process state owned by this module (one event loop per worker process)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.shutting_down = False


_state = _State()


def is_shutting_down() -> bool:
    return _state.shutting_down


def begin_shutdown() -> None:
    _state.shutting_down = True


def reset_for_tests() -> None:
    _state.shutting_down = False


def pending_count() -> int:
    return sum(1 for task in list(_state.tasks) if not task.done())


def spawn(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, tracked until it finishes; its failure is logged, never lost."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _state.tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _state.tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed: %r", task.get_name(), task.exception())


async def drain(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for background tasks; return how many were still running."""
    pending = {t for t in _state.tasks if not t.done()}
    if not pending:
        return 0
    _, still = await asyncio.wait(pending, timeout=timeout)
    return len(still)
