"""What the pool hands out and what it raises: plain data, no database."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import KimiAccount


@dataclasses.dataclass(frozen=True)
class Lease:
    """One reserved turn. Release it exactly once with ``lease_release``."""

    turn_id: int
    account_id: int
    protocol: str
    account_name: str
    # The account row as reserved (all fields), so the caller can build its upstream session without
    # reading it again. Not part of the lease's identity.
    account: KimiAccount | None = dataclasses.field(default=None, compare=False, repr=False)


class NoAccountAvailable(Exception):
    """No account can serve now.

    ``reason``: ``busy`` (some account is only at its concurrency cap: waiting helps), ``exhausted`` or
    ``cooling`` (the one freeing up first, at ``retry_at``), ``invalid`` / ``disabled`` (none will free
    up by itself; ``retry_at`` is None), ``none`` (no account matches at all).
    """

    def __init__(self, *, reason: str, retry_at: datetime | None) -> None:
        self.reason = reason
        self.retry_at = retry_at
        super().__init__(
            f"no Kimi account available ({reason})" + (f"; retry at {retry_at:%H:%M:%S}" if retry_at else "")
        )
