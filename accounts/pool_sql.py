"""The pool's hot path on PostgreSQL, as hand-written SQL: reserve one turn, release it after a success.

Why it exists: every chat request reserves and releases once, and building the equivalent ORM queries
(locking every candidate row, instantiating each, counting their turns) cost several times what
Postgres took to answer them (bench/README.md). The ORM versions in ``accounts/pool.py`` stay the
reference: SQLite uses them, and so does every rare path (nothing available, error outcomes).

The reservation is one statement: a call of the server-side function ``kimiproxy_reserve_turn``
(installed by migration accounts 0003, which explains its two steps: choose and lock one account with
SKIP LOCKED, then check the exact counts and take the turn in a new snapshot). One round trip in
autocommit instead of a four-round-trip transaction driven from here.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection

from accounts.choices import TurnStatus
from accounts.models import KimiAccount, Turn

ACCOUNT = KimiAccount._meta.db_table
TURN = Turn._meta.db_table
_FIELDS = [field.attname for field in KimiAccount._meta.concrete_fields]

# How many of an account's counted turns the choice looks at, at most: enough to compare real accounts
# (Kimi allows 30 per window) while the work stays bounded however busy the window is. An account
# with a higher limit that has used more than this ranks as if it had used this many, and passes the
# filter; the exact count under the lock still decides whether it can take the turn.
RANK_CAP = 100

# The function returns (turn_id, account row); the row's fields are read by name, in the model's order.
_RESERVE = (
    "SELECT "
    + ", ".join(f"(r.account).{field.column}" for field in KimiAccount._meta.concrete_fields)
    + ", r.turn_id FROM kimiproxy_reserve_turn(%(now)s, %(lease_expires_at)s, %(request_id)s,"
    " %(account_ids)s::bigint[], %(protocol)s, %(exclude)s::bigint[], %(rank_cap)s) r"
)

# One statement for a driver to run: SQL and its parameters.
Statement = tuple[str, dict[str, Any]]


def reserve_statement(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
) -> Statement:
    """The reservation, for ``reserve`` here or for the event loop's driver (gateway/db/eventloop.py).
    ``account_ids`` None means the pool's accounts; otherwise exactly those (pool.py ``_matching``)."""
    return _RESERVE, {
        "now": now,
        "lease_expires_at": now + timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT),
        "request_id": request_id[:64],
        "account_ids": None if account_ids is None else list(account_ids),
        "protocol": protocol or None,
        "exclude": list(exclude),
        "rank_cap": RANK_CAP,
    }


def reserved_account(row: tuple[Any, ...] | None) -> KimiAccount | None:
    """The account the reservation's row describes (as updated by it), with ``turn_id`` set; None when
    no account could take the turn (the caller then explains why, with the ORM)."""
    if row is None:
        return None
    account = KimiAccount.from_db(DEFAULT_DB_ALIAS, _FIELDS, row[:-1])
    account.turn_id = row[-1]  # type: ignore[attr-defined]
    return account


def reserve(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
) -> KimiAccount | None:
    """Reserve a turn through Django's connection; see ``reserve_statement`` and ``reserved_account``."""
    sql, params = reserve_statement(
        now=now, request_id=request_id, protocol=protocol, account_ids=account_ids, exclude=exclude
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return reserved_account(cursor.fetchone())


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
