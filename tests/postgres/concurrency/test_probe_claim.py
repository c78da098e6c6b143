"""Two probe loops on two processes never probe one account at once (accounts/probing.py), on PostgreSQL.

Each prober is a spawned process with its own database connection, as two ``pool_probe --loop``
services would be; a barrier starts their passes together. Model imports stay inside functions because
the spawned children import this module before setting Django up.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from tests.postgres.concurrency.test_refresh_single_flight import _database_url

PROBERS = 2
ACCOUNTS = 8

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _prober(database_url: str, fake_url: str, barrier: Any, results: Any) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = database_url
    for name in ("KIMI_BASE_URL", "KIMI_AUTH_URL", "KIMI_LEGACY_BASE_URL", "KIMI_AI_BASE_URL", "KIMI_AI_AUTH_URL"):
        os.environ[name] = fake_url
    import django

    django.setup()
    from accounts.probing import pool_probe_pass

    barrier.wait()  # both passes read the same list of accounts that need a probe
    items = pool_probe_pass(interval=600.0, refresh_margin=60.0)
    results.put([item.name for item in items])


@pytest.mark.django_db(transaction=True)
def test_two_probers_probe_each_account_exactly_once(fake_kimi: Any) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (run with DATABASE_URL=postgres://...): SQLite serialises writers anyway")
    from accounts.models import KimiAccount
    from tests.integration.kimi_client_helpers import account_for

    names = [f"acct-{n}" for n in range(ACCOUNTS)]
    for name in names:
        account_for(fake_kimi.mint_account(name))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROBERS), context.Queue()
    url = _database_url(connection.settings_dict)
    probers = [context.Process(target=_prober, args=(url, fake_kimi.url, barrier, results)) for _ in range(PROBERS)]
    for prober in probers:
        prober.start()
    for prober in probers:
        prober.join(timeout=90)
    assert [p.exitcode for p in probers] == [0] * PROBERS

    probed = [results.get(timeout=5) for _ in range(PROBERS)]
    assert sorted(sum(probed, [])) == names  # every account once, none by both
    for name in names:
        assert (fake_kimi.count("refresh", name), fake_kimi.count("user", name)) == (1, 1)
    assert fake_kimi.count("chat") == 0
    assert not KimiAccount.objects.filter(probe_claimed_until__isnull=False).exists()
