"""The reservation's two paths decide alike: the ORM reference (accounts/pool/orm.py) and the server-side
function (accounts/pool/pg.py, sql/reserve_turn.sql), on the same generated pools.

Each example builds a pool (account states, cooldowns, limits, windows, recency, pass-through and pool
accounts; turns counted, refunded, in flight with live or expired leases, at the window's edge), then
runs each path inside a savepoint that is rolled back, and compares the decision (the account chosen,
or none) and every row and column written: the turn and the account, and the row the lease carries.
The ranking cap is drawn small too, so its rule is exercised without a hundred turns; learned limits
(learn and pinned mode, around their 24 h expiry) decide both eligibility and the ranking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from accounts.choices import AccountSource, AccountState, LimitMode, Protocol, TurnStatus
from accounts.limits import LEARNED_LIMIT_SECONDS
from accounts.models import KimiAccount, Turn
from accounts.pool import Lease, orm, pg

pytestmark = [pytest.mark.postgres]
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# Offsets around the instants the rules compare against (a window's start, a cooldown's or lease's end).
EDGES = [-7200, -3601, -3600, -3599, -61, -60, -59, -1, 0, 1, 60, 3600]
# Ages of a learned limit around its expiry (limits.LEARNED_LIMIT_SECONDS).
LEARNED_AGES = [60, LEARNED_LIMIT_SECONDS - 1, LEARNED_LIMIT_SECONDS, LEARNED_LIMIT_SECONDS + 1]


@dataclasses.dataclass(frozen=True)
class TurnSpec:
    status: str
    started: int  # seconds before NOW
    lease_left: int  # seconds from NOW to the lease's expiry


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    passthrough: bool
    protocol: str
    state: str
    cooldown: int | None  # seconds from NOW
    turn_limit: int
    max_concurrent: int
    window_seconds: int
    last_used: int | None  # seconds before NOW
    turns: tuple[TurnSpec, ...]
    limit_mode: str = LimitMode.PINNED
    learned: tuple[int, int] | None = None  # (learned limit, seconds before NOW it was learned)


turns = st.builds(
    TurnSpec,
    status=st.sampled_from(TurnStatus.values),
    started=st.sampled_from([1, 30, 59, 60, 61, 3599, 3600, 3601]),
    lease_left=st.sampled_from([-60, -1, 0, 1, 60]),
)
accounts = st.builds(
    AccountSpec,
    passthrough=st.sampled_from([False, False, True]),
    protocol=st.sampled_from(Protocol.values),
    state=st.sampled_from([AccountState.ACTIVE, AccountState.ACTIVE, *AccountState.values]),
    cooldown=st.sampled_from([None, None, None, *EDGES]),
    turn_limit=st.sampled_from([1, 2, 2, 4]),  # repeated values: ties, where the order's later keys decide
    max_concurrent=st.integers(1, 3),
    window_seconds=st.sampled_from([60, 3600]),
    last_used=st.sampled_from([None, 0, 10, 600]),
    turns=st.lists(turns, max_size=4).map(tuple),
    limit_mode=st.sampled_from(LimitMode.values),
    learned=st.none() | st.tuples(st.sampled_from([1, 2, 5]), st.sampled_from(LEARNED_AGES)),
)


# Pools where every account may serve, varied only in what the ranking reads, so ties are common and
# each of its keys gets to decide.
rankable = st.builds(
    AccountSpec,
    passthrough=st.just(False),
    protocol=st.just(Protocol.CONNECT),
    state=st.sampled_from([AccountState.ACTIVE, AccountState.COOLING]),
    cooldown=st.sampled_from([None, -60, 0]),
    turn_limit=st.sampled_from([1, 2, 3]),
    max_concurrent=st.just(3),
    window_seconds=st.just(3600),
    last_used=st.sampled_from([None, 0, 10]),
    turns=st.lists(turns, max_size=3).map(tuple),
    limit_mode=st.sampled_from(LimitMode.values),
    learned=st.none() | st.tuples(st.sampled_from([1, 2]), st.sampled_from(LEARNED_AGES)),
)


@dataclasses.dataclass(frozen=True)
class Request:
    protocol: str | None
    account_ids: tuple[int, ...] | None  # indexes into the pool, mapped to ids once created
    exclude: tuple[int, ...]
    rank_cap: int


requests = st.builds(
    Request,
    protocol=st.none() | st.sampled_from(Protocol.values),
    account_ids=st.none() | st.lists(st.integers(0, 4), max_size=3).map(tuple),
    exclude=st.lists(st.integers(0, 4), max_size=2).map(tuple),
    rank_cap=st.sampled_from([1, 2, 100]),
)


def build(pool: list[AccountSpec]) -> list[int]:
    ids = []
    for n, spec in enumerate(pool):
        account = KimiAccount.objects.create(
            name=f"acct-{n}",
            source=AccountSource.PASSTHROUGH if spec.passthrough else AccountSource.POOL,
            token_hash=f"{n:064x}" if spec.passthrough else None,
            protocol=spec.protocol,
            state=spec.state,
            cooldown_until=None if spec.cooldown is None else NOW + timedelta(seconds=spec.cooldown),
            backoff_level=1 if spec.cooldown is not None else 0,
            turn_limit=spec.turn_limit,
            max_concurrent=spec.max_concurrent,
            window_seconds=spec.window_seconds,
            last_used_at=None if spec.last_used is None else NOW - timedelta(seconds=spec.last_used),
            limit_mode=spec.limit_mode,
            learned_limit=spec.learned[0] if spec.learned else None,
            learned_at=NOW - timedelta(seconds=spec.learned[1]) if spec.learned else None,
        )
        Turn.objects.bulk_create(
            Turn(
                account=account,
                status=t.status,
                started_at=NOW - timedelta(seconds=t.started),
                lease_expires_at=NOW + timedelta(seconds=t.lease_left),
                released_at=None if t.status == TurnStatus.IN_FLIGHT else NOW - timedelta(seconds=t.started),
                outcome="" if t.status == TurnStatus.IN_FLIGHT else "ok",
            )
            for t in spec.turns
        )
        ids.append(account.pk)
    return ids


def fields(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def database() -> dict[str, Any]:
    """Every row the reservation could write, turns without their ids (each path draws its own)."""
    return {
        "accounts": [fields(a) for a in KimiAccount.objects.order_by("pk")],
        "turns": sorted(
            (repr({k: v for k, v in fields(t).items() if k != "id"}) for t in Turn.objects.all()),
        ),
    }


def run(reserve: Callable[..., Lease | None], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The path's decision and the database it leaves, then undo it."""
    sid = transaction.savepoint()
    try:
        lease = reserve(**kwargs)
        if lease is None:
            decision: Any = None
        else:
            assert lease.account is not None
            turn = fields(Turn.objects.get(pk=lease.turn_id))
            del turn["id"]
            decision = (lease.account_id, lease.account_name, lease.protocol, fields(lease.account), turn)
        return decision, database()
    finally:
        transaction.savepoint_rollback(sid)


def compare(pool: list[AccountSpec], request: Request) -> None:
    """Both paths on ``pool`` for ``request``: the same decision and the same rows."""
    ids = build(pool)
    pick = [ids[i] for i in (request.account_ids or ()) if i < len(ids)]
    kwargs = {
        "now": NOW,
        "protocol": request.protocol,
        "account_ids": None if request.account_ids is None else pick,
        "exclude": [ids[i] for i in request.exclude if i < len(ids)],
        "request_id": "r-parity",
        "rank_cap": request.rank_cap,
    }
    before = database()

    by_orm, orm_rows = run(orm.reserve, **kwargs)
    by_sql, sql_rows = run(pg.reserve, **kwargs)

    event("an account was chosen" if by_orm else "no account")
    assert by_sql == by_orm
    assert sql_rows == orm_rows
    if by_orm is None:
        assert orm_rows == before  # no account: nothing written
    else:
        assert len(orm_rows["turns"]) == len(before["turns"]) + 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the reservation function is PostgreSQL's")
class ReserveParityTest(TestCase):
    @settings(max_examples=150, deadline=None)
    @given(pool=st.lists(accounts, max_size=5), request=requests)
    def test_the_orm_and_the_function_choose_and_write_alike(self, pool: list[AccountSpec], request: Request) -> None:
        compare(pool, request)

    @settings(max_examples=100, deadline=None)
    @given(pool=st.lists(rankable, min_size=2, max_size=4), rank_cap=st.sampled_from([1, 2, 100]))
    def test_they_rank_alike(self, pool: list[AccountSpec], rank_cap: int) -> None:
        compare(pool, Request(protocol=None, account_ids=None, exclude=(), rank_cap=rank_cap))
