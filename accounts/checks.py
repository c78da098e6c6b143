"""What a check of an account found out, and recording it (kimi-web-protocol.md C.10).

A check costs no chat turn: it is the refresh plus one or two account RPCs (``gateway.kimi.probes``).
The facts land on the account row, so the admin, ``kimi_accounts list`` and a later probe scheduler
read them without asking Kimi again. No token ever enters these objects.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from accounts.models import KimiAccount

# Verdicts: live; invalid (the token is dead, or refused too often: C.11); cooling (the refresh was
# refused without saying the token is dead: C.11); rejected (a fresh token was refused by the account
# RPC); unreachable (no answer, 5xx, timeout: says nothing about the account).
VERDICTS = ("live", "invalid", "cooling", "rejected", "unreachable")


@dataclasses.dataclass(frozen=True)
class AccountFacts:
    """Plan and subscription facts; "" / None where the upstream did not say."""

    plan: str = ""
    subscription_status: str = ""
    membership_level: int | None = None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    verdict: str
    message: str = ""
    facts: AccountFacts | None = None  # only when the account answered

    @property
    def live(self) -> bool:
        return self.verdict == "live"


def account_record_check(*, account_id: int, result: CheckResult, now: datetime) -> None:
    """Store when the account was checked and, when it answered, what it said (facts it did not give
    keep their previous value)."""
    changes: dict[str, object] = {"checked_at": now, "updated_at": now}
    facts = result.facts
    if facts is not None:
        if facts.plan:
            changes["plan"] = facts.plan[:100]
        if facts.subscription_status:
            changes["subscription_status"] = facts.subscription_status[:64]
        if facts.membership_level is not None:
            changes["membership_level"] = min(facts.membership_level, 32767)
    KimiAccount.objects.filter(pk=account_id).update(**changes)
