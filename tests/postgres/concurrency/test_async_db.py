"""The request path's statements on the event loop's own pool (gateway/db/eventloop.py), on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import psycopg_pool
import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db import utils as django_errors
from django.utils import timezone

from accounts.models import Turn
from accounts.pool import Lease, pg
from gateway.db import eventloop
from gateway.models import Conversation
from tests.factories import make_account
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import setup_pool

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the async pool is PostgreSQL's"),
]


async def close_connections() -> None:
    """The loop's pool, and the connection the ORM calls opened in asgiref's sync thread: neither may
    outlive the test database."""
    await eventloop.async_db_close()
    await sync_to_async(connections.close_all)()


def test_a_chat_request_makes_its_four_database_steps_on_the_servers_loop(e2e) -> None:
    client, _ = setup_pool(e2e)
    for earlier in list(eventloop._pools.values()):  # the e2e server may have served earlier tests
        earlier.pop_stats()

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=[{"role": "user", "content": "hi"}])

    log = wait_for_final_log(raw.headers["x-request-id"])
    assert log.outcome == "ok"
    (loop_pool,) = list(eventloop._pools.values())
    # accept, reservation, chat record, final write: one pool checkout (and one statement) each.
    assert loop_pool.pop_stats().get("requests_num") == 4
    assert not Conversation.objects.exists()  # the final write removed the deleted chat's row
    assert Turn.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
async def test_the_loop_reservation_admits_exactly_the_limit_under_50_concurrent_ones(settings) -> None:
    settings.KIMIPROXY_DB_ASYNC_POOL_MAX = 25  # 25 transactions at once contend for the two accounts' rows
    accounts = [await sync_to_async(make_account)(limit=3, max_concurrent=50) for _ in range(2)]

    async def reserve_one() -> Lease | None:
        statement = pg.reserve_statement(now=timezone.now(), request_id="", protocol=None, account_ids=None, exclude=())
        return pg.reserved_lease(await eventloop.fetchone(*statement))

    try:
        results = await asyncio.gather(*(reserve_one() for _ in range(50)))
    finally:
        await close_connections()

    taken = [lease for lease in results if lease is not None]
    assert Counter(lease.account_id for lease in taken) == {a.pk: 3 for a in accounts}
    assert all(lease.account is not None and lease.account.pk == lease.account_id for lease in taken)
    assert await sync_to_async(Turn.objects.count)() == 6


@pytest.mark.django_db(transaction=True)
async def test_a_failed_statement_raises_djangos_error_and_leaves_the_pool_usable() -> None:
    try:
        with pytest.raises(django_errors.ProgrammingError):
            await eventloop.fetchone(f"SELECT no_such_column FROM {Turn._meta.db_table}", [])
        assert await eventloop.fetchone(f"SELECT count(*) FROM {Turn._meta.db_table}", []) == (0,)
    finally:
        await close_connections()


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (psycopg.OperationalError("server closed the connection"), django_errors.OperationalError),
        (psycopg_pool.PoolTimeout("no connection in 10 s"), django_errors.OperationalError),
        (psycopg.errors.UniqueViolation("duplicate key"), django_errors.IntegrityError),
        (psycopg.DataError("value too long"), django_errors.DataError),
    ],
)
def test_psycopg_errors_leave_as_djangos(theirs: Exception, ours: type[Exception]) -> None:
    # The JSON error middleware answers Django's OperationalError with a 503, as for the ORM path.
    with pytest.raises(ours) as raised, eventloop._django_errors():
        raise theirs
    assert raised.value.__cause__ is theirs
