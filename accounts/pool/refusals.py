"""Quota refusals as evidence (kimi-web-protocol.md C.13): recording one, and what it teaches.

An explicit quota refusal of a chat (or ``GetSubscriptionStats`` at its limit) is stored with how many
turns the account had served in its window at that moment; in ``learn`` mode that count becomes the
account's limit for a while (accounts/pool/rules.py). A bare HTTP 429 is never recorded here.
"""

from __future__ import annotations

from datetime import datetime

from accounts.models import KimiAccount, QuotaRefusal
from accounts.pool import rules

MESSAGE_CHARS = 500


def refusal_record(
    *, account: KimiAccount, source: str, served: int, reset_at: datetime | None, message: str, now: datetime
) -> dict[str, object]:
    """Store the refusal and return the account columns it changes (the learned limit in learn mode;
    nothing when pinned). The caller writes them with its own update of the account."""
    change = rules.refusal_change(limit_mode=account.limit_mode, served=served, cap=account.turn_limit, now=now)
    learned = change.get("learned_limit")
    QuotaRefusal.objects.create(
        account=account,
        at=now,
        source=source,
        served=served,
        cap=account.turn_limit,
        learned=learned if isinstance(learned, int) else None,
        reset_at=reset_at,
        message=message[:MESSAGE_CHARS],
    )
    return change


def refusals_recent(*, account: KimiAccount, limit: int = 10) -> list[QuotaRefusal]:
    """The account's latest refusals, newest first (the evidence the admin page shows)."""
    return list(QuotaRefusal.objects.filter(account=account).order_by("-at")[:limit])
