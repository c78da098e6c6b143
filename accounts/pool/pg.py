"""The pool's reservation on PostgreSQL: one call of the server-side function in ``sql/reserve_turn.sql``.

Why it exists: every chat request reserves once, and building the equivalent ORM queries (locking
every candidate row, instantiating each, counting their turns) cost several times what Postgres took
to answer them (bench/README.md). One round trip in autocommit instead of a transaction driven from
here. The ORM version (``orm.py``) stays the reference; the parity tests hold the two together.

The function's text is the repository's file, rendered with the rules' values (``rules.py``,
accounts/choices.py), and its name carries a hash of that text: ``install`` (run by post_migrate, see
accounts/apps.py) creates it when missing, so each code version calls the function it was written for,
even while two versions share one database during a rolling deploy (README.md in this folder).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from accounts import limits
from accounts.models import KimiAccount, Turn
from accounts.pool import rules
from accounts.pool.lease import Lease

SOURCE = Path(__file__).with_name("sql") / "reserve_turn.sql"
FUNCTION_PREFIX = "kimiproxy_reserve_turn_"
# The name migration accounts 0003 installed, before names were versioned; kept for the workers of
# older releases during a rolling deploy (README.md), called by nothing in this code.
UNVERSIONED_FUNCTION = "kimiproxy_reserve_turn"
_FIELDS = [field.attname for field in KimiAccount._meta.concrete_fields]
_SECTION = re.compile(r"^-- <<(\w+)>>$", re.MULTILINE)

# One statement for a driver to run: SQL and its parameters.
Statement = tuple[str, dict[str, Any]]


def literal(value: object) -> str:
    """A constant of ours (a choices value, a number, None) as SQL text; never a caller's value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {value!r}")


def literal_list(values: Iterable[object]) -> str:
    """``('a', 'b')`` in a stable order, for ``IN``."""
    return "(" + ", ".join(sorted(literal(v) for v in values)) + ")"


def matches(column_values: Mapping[str, object], *, prefix: str = "") -> str:
    """``a = 'x' AND b IS NULL``: the SQL of an ORM ``filter(**column_values)``."""
    parts = [
        f"{prefix}{column} IS NULL" if value is None else f"{prefix}{column} = {literal(value)}"
        for column, value in column_values.items()
    ]
    return " AND ".join(parts)


def assignments(column_values: Mapping[str, object]) -> str:
    """``a = 'x', b = NULL``: the SQL of an ORM ``update(**column_values)``."""
    return ", ".join(f"{column} = {literal(value)}" for column, value in column_values.items())


def effective_limit_sql(row: str) -> str:
    """``rules.effective_limit`` of the account row ``row`` at ``p_now`` as SQL (values from limits.py)."""
    holds = (
        f"{row}.limit_mode = {literal(rules.LEARN_MODE)} AND {row}.learned_limit IS NOT NULL"
        f" AND {row}.learned_at > p_now - {limits.LEARNED_LIMIT_SECONDS} * interval '1 second'"
    )
    return (
        f"(CASE WHEN {holds} THEN GREATEST(1, LEAST({row}.turn_limit, {row}.learned_limit)) ELSE {row}.turn_limit END)"
    )


def _render(name: str) -> str:
    sections = _SECTION.split(SOURCE.read_text())
    parts = dict(zip(sections[1::2], sections[2::2], strict=True))
    values = {
        "account_table": KimiAccount._meta.db_table,
        "turn_table": Turn._meta.db_table,
        "uncounted_status": literal(rules.UNCOUNTED_STATUS),
        "live_status": literal(rules.LIVE_STATUS),
        "pool_source": literal(rules.POOL_SOURCE),
        "unusable_states": literal_list(rules.UNUSABLE_STATES),
        "taken_turn_status": literal(rules.TAKEN_TURN["status"]),
        "taken_turn_outcome": literal(rules.TAKEN_TURN["outcome"]),
        "taken_account_state": literal(rules.TAKEN_ACCOUNT["state"]),
        "effective_limit_a": effective_limit_sql("a"),
        "effective_limit_chosen": effective_limit_sql("chosen"),
    }
    # The choice's own comment stays in the file: the function gets the query alone, twice.
    choose = "\n".join(line for line in parts["choose"].strip("\n").splitlines() if not line.startswith("--"))
    return (
        parts["function"]
        .strip("\n")
        .format(
            function=name,
            choose_skip_locked=choose.format(**values, lock="SKIP LOCKED"),
            choose_blocking=choose.format(**values, lock=""),
            **values,
        )
    )


@cache
def function_name() -> str:
    """The installed function's name: the prefix and a hash of the rendered function text."""
    digest = hashlib.sha256(_render(FUNCTION_PREFIX).encode()).hexdigest()[:12]
    return FUNCTION_PREFIX + digest


def function_sql() -> str:
    """``CREATE OR REPLACE FUNCTION`` of this code's version."""
    return _render(function_name())


def install(db: BaseDatabaseWrapper) -> bool:
    """Create this version's function unless it exists already (its name says its text); True if created.

    Idempotent and cheap, so every post_migrate may call it (flushes in tests send one too).
    """
    if db.vendor != "postgresql":
        return False
    exists = "SELECT 1 FROM pg_proc WHERE proname = %s"
    with db.cursor() as cursor:
        cursor.execute(exists, [function_name()])
        if cursor.fetchone() is not None:
            return False
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        # Two processes migrating at once: the second waits here, then finds the function.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [function_name()])
        cursor.execute(exists, [function_name()])
        if cursor.fetchone() is not None:
            return False
        cursor.execute(function_sql())
    return True


@cache
def _reserve_sql() -> str:
    # The function returns (turn_id, account row); the row's fields are read by name, in the model's order.
    columns = ", ".join(f"(r.account).{field.column}" for field in KimiAccount._meta.concrete_fields)
    # Only our column names and function name are interpolated; every value is a parameter.
    return (
        f"SELECT {columns}, r.turn_id FROM {function_name()}("  # noqa: S608
        "%(now)s, %(lease_expires_at)s, %(request_id)s,"
        " %(account_ids)s::bigint[], %(protocol)s, %(exclude)s::bigint[], %(rank_cap)s) r"
    )


def reserve_statement(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
    rank_cap: int = rules.RANK_CAP,
) -> Statement:
    """The reservation, for ``reserve`` here or for the event loop's driver (gateway/db/eventloop.py).
    ``account_ids`` None means the pool's accounts; otherwise exactly those (``orm.matching``)."""
    return _reserve_sql(), {
        "now": now,
        "lease_expires_at": rules.lease_expires_at(now=now, lease_seconds=settings.KIMIPROXY_LEASE_TIMEOUT),
        "request_id": request_id[: rules.REQUEST_ID_CHARS],
        "account_ids": None if account_ids is None else list(account_ids),
        "protocol": protocol or None,
        "exclude": list(exclude),
        "rank_cap": rank_cap,
    }


def reserved_lease(row: tuple[Any, ...] | None) -> Lease | None:
    """The lease the reservation's row describes, carrying the account as updated by it; None when no
    account could take the turn (the caller then explains why, with the ORM)."""
    if row is None:
        return None
    account = KimiAccount.from_db(DEFAULT_DB_ALIAS, _FIELDS, row[:-1])
    return Lease(
        turn_id=row[-1], account_id=account.pk, protocol=account.protocol, account_name=account.name, account=account
    )


def reserve(
    *,
    now: datetime,
    request_id: str,
    protocol: str | None,
    account_ids: Collection[int] | None,
    exclude: Collection[int],
    rank_cap: int = rules.RANK_CAP,
) -> Lease | None:
    """Reserve a turn through Django's connection; see ``reserve_statement`` and ``reserved_lease``."""
    sql, params = reserve_statement(
        now=now, request_id=request_id, protocol=protocol, account_ids=account_ids, exclude=exclude, rank_cap=rank_cap
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return reserved_lease(cursor.fetchone())
