"""The account pool (README.md in this folder): ``rules`` (pure), ``orm`` (the reference), ``pg`` (the
Postgres fast path, with ``sql/``), ``services`` (what callers use, re-exported here)."""

from __future__ import annotations

from accounts.pool.lease import Lease, NoAccountAvailable
from accounts.pool.services import (
    account_reserve,
    account_unavailable,
    extra_turn_record,
    lease_reclaim_stale,
    lease_release,
)
from accounts.selectors import account_usage

__all__ = [
    "Lease",
    "NoAccountAvailable",
    "account_reserve",
    "account_unavailable",
    "account_usage",
    "extra_turn_record",
    "lease_reclaim_stale",
    "lease_release",
]
