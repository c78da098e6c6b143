"""Single-flight token refresh across processes on PostgreSQL: N workers, one refresh call upstream.

Each worker is a spawned process with its own database connection and event loop, as gunicorn workers
are; a barrier starts them together. Model imports stay inside functions because the spawned children
import this module before setting Django up.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from typing import Any

import pytest

WORKERS = 3

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _database_url(settings_dict: dict[str, Any]) -> str:
    user, host = settings_dict.get("USER") or "postgres", settings_dict.get("HOST") or "127.0.0.1"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def _worker(database_url: str, fake_url: str, account_id: int, barrier: Any, results: Any) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = database_url
    for name in ("KIMI_BASE_URL", "KIMI_AUTH_URL", "KIMI_LEGACY_BASE_URL", "KIMI_AI_BASE_URL", "KIMI_AI_AUTH_URL"):
        os.environ[name] = fake_url
    import asyncio

    import django

    django.setup()
    from accounts.models import KimiAccount
    from gateway.kimi import session_for
    from gateway.kimi.transport.http import upstream_client_close

    async def refresh() -> str:
        session = session_for(await KimiAccount.objects.aget(pk=account_id))
        barrier.wait()  # all workers ask for a token at the same moment
        try:
            return await session.tokens.access_token()  # type: ignore[attr-defined]
        finally:
            await upstream_client_close()

    token = asyncio.run(refresh())
    results.put(hashlib.sha256(token.encode()).hexdigest())  # never pass the token itself around


@pytest.mark.django_db(transaction=True)
def test_it_refreshes_once_when_workers_race(fake_kimi: Any) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...): SQLite serialises writers anyway")
    from tests.integration.kimi_client_helpers import account_for

    account = account_for(fake_kimi.mint_account("alice"))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    url = _database_url(connection.settings_dict)
    workers = [
        context.Process(target=_worker, args=(url, fake_kimi.url, account.pk, barrier, results)) for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * WORKERS
    hashes = {results.get(timeout=5) for _ in range(WORKERS)}
    assert len(hashes) == 1  # every worker got the same access token
    assert fake_kimi.count("refresh") == 1
    account.refresh_from_db()
    assert account.refreshing_until is None and account.access_token_enc
