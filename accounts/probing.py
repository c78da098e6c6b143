"""The probe scheduler (``manage.py pool_probe``): which accounts a pass checks, and the claim that keeps
two processes from checking one account at once.

A probe is ``account_check_now`` (refresh + account RPCs, kimi-web-protocol.md C.10; never a chat), the
same check as ``kimi_accounts check`` and the admin's "probe now". A pass checks only the accounts whose
state it needs to learn (``probe_reason``); what the check finds lands on the account
(``accounts.checks.account_record_check``: a live check of a cooling or exhausted account whose time has
passed, or of an invalid one, makes it active).

The claim is the sendalerts pattern (STYLE.md 3): a conditional update of ``probe_claimed_until`` and its
row count. After winning it the pass reads the row again and asks ``probe_reason`` again, so an account
another process has just probed is not probed a second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from accounts.choices import AccountState
from accounts.models import KimiAccount

# A claim outlasts any probe (a refresh and three RPCs, each with its own timeout); past it, the claim of
# a prober that died is taken over.
CLAIM_SECONDS = 300.0
# An invalid account is probed at most this often: its token is most likely dead, but the operator may
# have pasted a new one or the upstream may have been wrong (C.11).
INVALID_PROBE_SECONDS = 24 * 3600


def probe_reason(*, account: KimiAccount, now: datetime, interval: float, refresh_margin: float) -> str | None:
    """Why a pass should check this account now, or None. Pure: reads the row's columns only."""
    checked_before = account.checked_at is None or account.checked_at <= now - timedelta(seconds=interval)
    time_over = account.cooldown_until is None or account.cooldown_until <= now
    if account.state == AccountState.DISABLED:
        return None
    if account.state == AccountState.INVALID:
        daily = account.checked_at is None or account.checked_at <= now - timedelta(seconds=INVALID_PROBE_SECONDS)
        return "invalid, daily check" if daily else None
    if account.state == AccountState.COOLING:
        return "cooldown over" if time_over else None
    if account.state == AccountState.EXHAUSTED:
        return "exhausted past its reset time" if time_over else None
    unused = account.last_used_at is None or account.last_used_at <= now - timedelta(seconds=interval)
    if unused and checked_before:
        return "unused"
    margin = timedelta(seconds=refresh_margin)
    due = account.access_expires_at is None or account.access_expires_at - margin <= now
    return "refresh due" if account.refresh_token_enc and due else None


def probe_claim(*, account_id: int, now: datetime) -> bool:
    """True when this process now owns the account's probe (exactly one row updated)."""
    free = Q(probe_claimed_until__isnull=True) | Q(probe_claimed_until__lt=now)
    until = now + timedelta(seconds=CLAIM_SECONDS)
    return KimiAccount.objects.filter(free, pk=account_id).update(probe_claimed_until=until) == 1


def probe_release(*, account_id: int) -> None:
    KimiAccount.objects.filter(pk=account_id).update(probe_claimed_until=None)


@dataclasses.dataclass(frozen=True)
class ProbeItem:
    """One probed account: why, what the check said, its state before and after."""

    name: str
    reason: str
    verdict: str
    message: str
    state_before: str
    state_after: str

    def line(self) -> str:
        same = self.state_before == self.state_after
        change = self.state_before if same else f"{self.state_before} -> {self.state_after}"
        said = f" ({self.message[:120]})" if self.message and self.verdict != "live" else ""
        return f"probed {self.name} ({self.reason}): {self.verdict}{said}, {change}"


def pool_probe_pass(
    *,
    interval: float,
    refresh_margin: float,
    now: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[ProbeItem]:
    """Probe each account that needs it, one at a time; stop between accounts when ``should_stop()``.
    ``now`` dates everything (tests move it instead of sleeping); by default the clock is read per
    account."""
    from accounts.services import account_check_now  # services imports this module's callers

    def clock() -> datetime:
        return now if now is not None else timezone.now()

    items = []
    start = clock()
    candidates = KimiAccount.objects.exclude(state=AccountState.DISABLED).filter(
        Q(probe_claimed_until__isnull=True) | Q(probe_claimed_until__lt=start)
    )
    for candidate in candidates.order_by("pk"):
        if should_stop():
            break
        at = clock()
        if probe_reason(account=candidate, now=at, interval=interval, refresh_margin=refresh_margin) is None:
            continue
        if not probe_claim(account_id=candidate.pk, now=at):
            continue  # another process is probing it
        try:
            account = KimiAccount.objects.get(pk=candidate.pk)
            reason = probe_reason(account=account, now=at, interval=interval, refresh_margin=refresh_margin)
            if reason is None:
                continue  # another process probed it since this pass read the list
            result = account_check_now(account=account, now=at)
            after = KimiAccount.objects.only("state").get(pk=account.pk).state
            items.append(ProbeItem(account.name, reason, result.verdict, result.message, account.state, after))
        finally:
            probe_release(account_id=candidate.pk)
    return items
