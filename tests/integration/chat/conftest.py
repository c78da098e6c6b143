"""Set-up for driving the pipeline's stages one by one, in the test's own event loop, against the fake
Kimi on loopback: two pool accounts and a key (``pool``), jobs built as accept would hand them over
(``make_job``). The stages' database steps run in worker threads (gateway/db/threads.py), so the data
is committed (``transactional_db``); the background work the stages spawn is drained before the
database goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import lifecycle
from gateway.db.threads import db_call
from gateway.kimi.fake import FakeKimi
from gateway.kimi.transport.http import upstream_client_close
from tests.integration.chat.helpers import Pool, make_pool


@pytest.fixture
def pool_limits() -> dict[str, Any]:
    """Override in a module for accounts with limits (``max_concurrent``, ``limit``...)."""
    return {}


@pytest.fixture
async def pool(fake_kimi: FakeKimi, transactional_db: None, pool_limits: dict[str, Any]) -> AsyncIterator[Pool]:
    yield await db_call(make_pool, fake_kimi, pool_limits)
    # The stages' spawned work (final writes, chat deletes) ends before the test database does.
    assert await lifecycle.drain(10) == 0, "background work still running after the test"
    await upstream_client_close()
