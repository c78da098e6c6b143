"""The pool's hot path on PostgreSQL, as hand-written SQL: reserve one turn, release it after a success.

Why it exists: every chat request reserves and releases once, and building the equivalent ORM queries
(locking every candidate row, instantiating each, counting their turns) cost several times what
Postgres took to answer them (bench/README.md). The ORM versions in ``accounts/pool.py`` stay the
reference: SQLite uses them, and so does every rare path (nothing available, error outcomes).

Reservation, in one transaction (4 round trips with BEGIN/COMMIT):

1. choose and lock: the best eligible account by the counts of this statement's snapshot (a ranking
   only), ``FOR UPDATE OF a SKIP LOCKED LIMIT 1`` — concurrent reservations take *different* accounts
   instead of queueing on the same rows;
2. check and take: a new statement, so a new snapshot taken after the lock was granted: it sees every
   turn committed by whoever held the lock before (the exactness rule of pool.py). It inserts the turn
   only if the exact counts allow it, and updates the account in the same statement.

If step 2 finds the account full after all (the ranking's counts were stale), the account is skipped
and step 1 runs again. If step 1 finds nothing unlocked, it runs once more with a blocking lock (in
rank order, so skipped rows never look "exhausted").
"""

from __future__ import annotations

from collections.abc import Collection, Generator
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction

from accounts import limits
from accounts.choices import AccountSource, AccountState, TurnStatus
from accounts.models import KimiAccount, Turn

ACCOUNT = KimiAccount._meta.db_table
TURN = Turn._meta.db_table
_FIELDS = [field.attname for field in KimiAccount._meta.concrete_fields]
_COLUMNS = ", ".join(f"a.{field.column}" for field in KimiAccount._meta.concrete_fields)

# How many of an account's counted turns the choice looks at, at most: enough to compare real accounts
# (Kimi allows 30 per window) while the work stays bounded however busy the window is. An account
# with a higher limit that has used more than this ranks as if it had used this many, and passes the
# filter; the exact count under the lock (_TAKE) still decides whether it can take the turn.
RANK_CAP = 100

# Counted turns in the account's window (capped, see RANK_CAP) and live (in flight, lease not expired)
# turns; each is one index range: (account, started_at) and (status, lease_expires_at).
_USED = (
    f"(SELECT count(*) FROM (SELECT 1 FROM {TURN} t WHERE t.account_id = a.id AND t.status <> 'refunded'"
    " AND t.started_at > %(now)s - a.window_seconds * interval '1 second'"
    f" LIMIT LEAST(a.turn_limit, {RANK_CAP})) counted)"
)
_LIVE = (
    f"(SELECT count(*) FROM {TURN} t WHERE t.account_id = a.id AND t.status = 'in_flight'"
    " AND t.lease_expires_at > %(now)s)"
)

# The counts are computed once per candidate: OFFSET 0 keeps the planner from copying the LATERAL
# subqueries into both the filter and the sort key.
_CHOOSE = (
    f"SELECT {_COLUMNS} FROM {ACCOUNT} a CROSS JOIN LATERAL (SELECT {_USED} AS used, {_LIVE} AS live OFFSET 0) c"
    " WHERE {filters} AND a.state NOT IN ('invalid', 'disabled')"
    " AND (a.cooldown_until IS NULL OR a.cooldown_until <= %(now)s)"
    " AND c.used < a.turn_limit AND c.live < a.max_concurrent"
    " ORDER BY a.turn_limit - c.used DESC, a.last_used_at ASC NULLS FIRST, a.id"
    " LIMIT 1 FOR UPDATE OF a {skip}"
)

_TAKE = (
    f"WITH ins AS (INSERT INTO {TURN} (account_id, started_at, status, lease_expires_at, outcome, request_id)"
    " SELECT %(id)s, %(now)s, 'in_flight', %(lease_expires_at)s, '', %(request_id)s"
    f" WHERE (SELECT count(*) FROM (SELECT 1 FROM {TURN} WHERE account_id = %(id)s AND status <> 'refunded'"
    "   AND started_at > %(window_start)s LIMIT %(turn_limit)s) counted) < %(turn_limit)s"
    f" AND (SELECT count(*) FROM {TURN} WHERE account_id = %(id)s AND status = 'in_flight'"
    "   AND lease_expires_at > %(now)s) < %(max_concurrent)s"
    " RETURNING id),"
    f" upd AS (UPDATE {ACCOUNT} SET last_used_at = %(now)s, total_turns = total_turns + 1, state = 'active',"
    "   updated_at = %(now)s WHERE id = %(id)s AND EXISTS (SELECT 1 FROM ins))"
    " SELECT id FROM ins"
)


def _filters(
    *, protocol: str | None, account_ids: Collection[int] | None, exclude: Collection[int]
) -> tuple[str, dict[str, Any]]:
    """Which accounts the request may use at all (pool.py ``_matching``)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if account_ids is None:
        clauses.append("a.source = %(source)s")
        params["source"] = AccountSource.POOL.value
    else:
        clauses.append("a.id = ANY(%(account_ids)s)")
        params["account_ids"] = list(account_ids)
    if protocol:
        clauses.append("a.protocol = %(protocol)s")
        params["protocol"] = protocol
    if exclude:
        clauses.append("NOT (a.id = ANY(%(exclude)s))")
        params["exclude"] = list(exclude)
    return " AND ".join(clauses), params


# One statement for a driver to run: SQL and its parameters. The reservation is written once, as a
# generator that yields statements and receives each one's first row; ``reserve`` runs it through
# Django's cursor in a worker thread, ``reserve_async`` on the event loop (gateway/dbasync.py).
Statement = tuple[str, dict[str, Any]]
Steps = Generator[Statement, "tuple[Any, ...] | None", "KimiAccount | None"]


def _reserve_steps(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
) -> Steps:
    skipped: list[int] = []
    for skip in ("SKIP LOCKED", ""):
        while True:
            filters, params = _filters(protocol=protocol, account_ids=account_ids, exclude=[*exclude, *skipped])
            row = yield _CHOOSE.format(filters=filters, skip=skip), {**params, "now": now}
            if row is None:
                break
            account = KimiAccount.from_db(DEFAULT_DB_ALIAS, _FIELDS, row)
            window_start = limits.window_start(now=now, window_seconds=account.window_seconds)
            taken = yield (
                _TAKE,
                {
                    "id": account.pk,
                    "now": now,
                    "lease_expires_at": now + timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT),
                    "request_id": request_id[:64],
                    "window_start": window_start,
                    "turn_limit": account.turn_limit,
                    "max_concurrent": account.max_concurrent,
                },
            )
            if taken is None:
                skipped.append(account.pk)  # full after all: the ranking's counts were stale
                continue
            account.last_used_at, account.total_turns = now, account.total_turns + 1
            account.state = AccountState.ACTIVE
            account.turn_id = taken[0]  # type: ignore[attr-defined]
            return account
    return None


def reserve(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
) -> KimiAccount | None:
    """Reserve a turn; return the account (updated as reserved) with ``turn_id`` set, or None when no
    account can serve (the caller then explains why, with the ORM)."""
    steps = _reserve_steps(now=now, request_id=request_id, protocol=protocol, account_ids=account_ids, exclude=exclude)
    with transaction.atomic(), connection.cursor() as cursor:
        try:
            sql, params = next(steps)
            while True:
                cursor.execute(sql, params)
                sql, params = steps.send(cursor.fetchone())
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class AsyncTransaction(Protocol):
    """One connection inside BEGIN/COMMIT, on the event loop (gateway.dbasync.Transaction)."""

    async def fetchone(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None: ...


async def reserve_async(
    tx: AsyncTransaction,
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
) -> KimiAccount | None:
    """``reserve`` inside the caller's transaction ``tx`` on the event loop (gateway/dbasync.py)."""
    steps = _reserve_steps(now=now, request_id=request_id, protocol=protocol, account_ids=account_ids, exclude=exclude)
    try:
        sql, params = next(steps)
        while True:
            sql, params = steps.send(await tx.fetchone(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def release_ok(*, turn_id: int, refund: bool, now: datetime) -> int:
    """End an in-flight turn with outcome ``ok`` in one statement; return 1 if it was in flight, else 0."""
    status = TurnStatus.REFUNDED if refund else TurnStatus.DONE
    with connection.cursor() as cursor:
        # Data-modifying CTEs run even when the outer UPDATE matches nothing; the RETURNING subquery
        # would then be lost, so the count is read from a wrapper instead.
        cursor.execute(
            f"WITH turn AS (UPDATE {TURN} SET status = %(status)s, released_at = %(now)s, outcome = 'ok'"
            " WHERE id = %(turn_id)s AND status = 'in_flight' RETURNING account_id),"
            f" heal AS (UPDATE {ACCOUNT} SET state = 'active', cooldown_until = NULL, backoff_level = 0,"
            " updated_at = %(now)s WHERE id IN (SELECT account_id FROM turn)"
            " AND state NOT IN ('invalid', 'disabled')"
            " AND NOT (state = 'active' AND cooldown_until IS NULL AND backoff_level = 0))"
            " SELECT count(*) FROM turn",
            {"status": status.value, "now": now, "turn_id": turn_id},
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0
