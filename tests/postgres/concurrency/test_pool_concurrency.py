"""The pool under real concurrency: threads with their own connections, started together by a barrier.

These need row locks, so they run on PostgreSQL only (SQLite serialises writers instead). They use
``django_db(transaction=True)`` (TransactionTestCase semantics): the threads must see each other's
commits, which a test wrapped in one transaction would hide.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, connections

from accounts import pool
from accounts.models import Turn
from tests.factories import make_account

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock concurrency needs PostgreSQL"),
]


def run_together(count: int, work: Callable[[], object]) -> list[object]:
    """Run ``work`` in ``count`` threads released at once; return each result or exception."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_it_admits_exactly_the_limit_under_50_concurrent_reservations() -> None:
    accounts = [make_account(limit=3, max_concurrent=50), make_account(limit=3, max_concurrent=50)]

    results = run_together(50, pool.account_reserve)

    leases = [r for r in results if isinstance(r, pool.Lease)]
    refused = [r for r in results if isinstance(r, pool.NoAccountAvailable)]
    assert len(leases) == 6, [r for r in results if not isinstance(r, pool.Lease | pool.NoAccountAvailable)]
    assert len(refused) == 44
    assert {r.reason for r in refused} == {"exhausted"}
    assert Counter(lease.account_id for lease in leases) == {a.pk: 3 for a in accounts}
    assert Turn.objects.count() == 6


def test_it_respects_the_concurrency_cap_under_concurrent_reservations() -> None:
    account = make_account(limit=100, max_concurrent=2)

    results = run_together(20, pool.account_reserve)

    leases = [r for r in results if isinstance(r, pool.Lease)]
    refused = [r for r in results if isinstance(r, pool.NoAccountAvailable)]
    assert (len(leases), len(refused)) == (2, 18)
    assert {r.reason for r in refused} == {"busy"}
    assert Turn.objects.filter(account=account).count() == 2
