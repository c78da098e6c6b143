"""What a check of an account found out, and recording it (kimi-web-protocol.md C.10).

A check costs no chat turn: it is the refresh plus one or two account RPCs (``gateway.kimi.probes``).
The facts land on the account row, so the admin, ``kimi_accounts list`` and a later probe scheduler
read them without asking Kimi again. No token ever enters these objects.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounts import selectors
from accounts.choices import AccountState, RefusalSource
from accounts.models import KimiAccount
from accounts.pool import rules
from accounts.pool.refusals import refusal_record

# Verdicts: live; invalid (the token is dead, or refused too often: C.11); cooling (the refresh was
# refused without saying the token is dead: C.11); rejected (a fresh token was refused by the account
# RPC); unreachable (no answer, 5xx, timeout: says nothing about the account).
VERDICTS = ("live", "invalid", "cooling", "rejected", "unreachable")


@dataclasses.dataclass(frozen=True)
class RateWindow:
    """One ``GetSubscriptionStats`` rate-limit window (``5h`` or ``7d``): the used ratio, its reset time."""

    name: str
    ratio: float | None
    reset_at: datetime | None


@dataclasses.dataclass(frozen=True)
class AccountFacts:
    """Plan and subscription facts; "" / None where the upstream did not say."""

    plan: str = ""
    subscription_status: str = ""
    membership_level: int | None = None
    windows: tuple[RateWindow, ...] = ()


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
    keep their previous value). A rate-limit window used up (ratio 1) with a reset time ahead is a quota
    refusal like a chat's (C.13): the account is exhausted until then and the refusal is recorded."""
    changes: dict[str, object] = {
        "checked_at": now,
        "updated_at": now,
        "check_verdict": result.verdict,
        "check_message": result.message[:500],
    }
    facts = result.facts
    if facts is not None:
        if facts.plan:
            changes["plan"] = facts.plan[:100]
        if facts.subscription_status:
            changes["subscription_status"] = facts.subscription_status[:64]
        if facts.membership_level is not None:
            changes["membership_level"] = min(facts.membership_level, 32767)
        for window in facts.windows:
            changes[f"stats_{window.name}_ratio"] = window.ratio
            changes[f"stats_{window.name}_reset_at"] = window.reset_at
    used_up = facts is not None and any(_used_up(w, now) for w in facts.windows)
    with transaction.atomic():
        if facts is not None and used_up:
            changes |= _window_refusal(account_id=account_id, windows=facts.windows, now=now)
        KimiAccount.objects.filter(pk=account_id).update(**changes)
        if result.live and not used_up:
            _recover(account_id=account_id, now=now)


def _recover(*, account_id: int, now: datetime) -> None:
    """A live check brings the account back without waiting for traffic: a cooling or exhausted one once
    its time (``cooldown_until``, the upstream's reset time) has passed; an invalid one at once, since
    "live" means its refresh has just succeeded (a new token, or the upstream was wrong). A disabled
    account is the operator's and is never touched."""
    healed = {"state": AccountState.ACTIVE, "cooldown_until": None, "backoff_level": 0, "updated_at": now}
    rows = KimiAccount.objects.filter(pk=account_id)
    over = Q(cooldown_until__isnull=True) | Q(cooldown_until__lte=now)
    rows.filter(over, state__in=(AccountState.COOLING, AccountState.EXHAUSTED)).update(**healed)
    rows.filter(state=AccountState.INVALID).update(**healed)


def _used_up(window: RateWindow, now: datetime) -> bool:
    return window.ratio is not None and window.ratio >= 1 and window.reset_at is not None and window.reset_at > now


def _window_refusal(*, account_id: int, windows: tuple[RateWindow, ...], now: datetime) -> dict[str, object]:
    """The account columns of a used-up window: exhausted until its reset (the latest, when both are
    used up), the refusal recorded with the turns counted now (accounts/pool/refusals.py)."""
    account = KimiAccount.objects.select_for_update().get(pk=account_id)
    used_up = [w for w in windows if _used_up(w, now)]
    window = max(used_up, key=lambda w: w.reset_at or now)
    if account.state in rules.UNUSABLE_STATES:
        return {}
    served = len(selectors.counted_starts(account=account, now=now))
    source = RefusalSource.STATS_5H if window.name == "5h" else RefusalSource.STATS_7D
    message = f"GetSubscriptionStats {window.name} window used up"
    changes = refusal_record(
        account=account, source=source, served=served, reset_at=window.reset_at, message=message, now=now
    )
    until = window.reset_at if account.cooldown_until is None else max(account.cooldown_until, window.reset_at)  # type: ignore[type-var]
    return changes | {
        "state": AccountState.EXHAUSTED,
        "cooldown_until": until,
        "last_error_code": "rate_limited",
        "last_error_message": message,
        "last_error_at": now,
    }
