"""Account pool numbers for the dashboard: turns used in each account's own window, states, leftovers.

Usage counts non-refunded ``Turn`` rows started inside the account's ``window_seconds``, the same rule
the pool reserves by (accounts/models.py). One query for the accounts, one for their recent turns.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from accounts.choices import AccountSource, AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from gateway.choices import ConversationState
from gateway.models import Conversation


@dataclasses.dataclass(frozen=True)
class AccountUsage:
    id: int
    name: str
    state: str
    state_label: str
    used: int
    limit: int
    next_free_at: datetime | None  # None: a turn is free now
    last_error_code: str
    last_error_message: str
    last_error_at: datetime | None
    next_free_soon: bool = False  # within a minute: "in 0 minutes" reads badly

    @property
    def used_fraction(self) -> float:
        return self.used / self.limit if self.limit else 1.0


def next_free_at(*, starts: list[datetime], limit: int, window: timedelta) -> datetime | None:
    """When the account gets a turn back: None below the limit, else when enough old turns age out."""
    if len(starts) < limit:
        return None
    oldest_first = sorted(starts)
    return oldest_first[len(starts) - limit] + window


def pool_usage(*, now: datetime) -> list[AccountUsage]:
    """Every pool account with its usage in its current window, by name."""
    accounts = list(KimiAccount.objects.filter(source=AccountSource.POOL).order_by("name"))
    if not accounts:
        return []
    longest = max(a.window_seconds for a in accounts)
    starts: dict[int, list[datetime]] = defaultdict(list)
    turns = Turn.objects.filter(
        account__source=AccountSource.POOL, started_at__gt=now - timedelta(seconds=longest)
    ).exclude(status=TurnStatus.REFUNDED)
    for account_id, started_at in turns.values_list("account_id", "started_at"):
        starts[account_id].append(started_at)
    return [_usage(account, starts[account.pk], now) for account in accounts]


def _usage(account: KimiAccount, starts: list[datetime], now: datetime) -> AccountUsage:
    window = timedelta(seconds=account.window_seconds)
    in_window = [s for s in starts if s > now - window]
    free_at = next_free_at(starts=in_window, limit=account.turn_limit, window=window)
    if account.state == AccountState.COOLING and account.cooldown_until and account.cooldown_until > now:
        free_at = max(free_at or now, account.cooldown_until)
    return AccountUsage(
        id=account.pk,
        name=account.name,
        state=account.state,
        state_label=account.get_state_display(),
        used=len(in_window),
        limit=account.turn_limit,
        next_free_at=free_at,
        last_error_code=account.last_error_code,
        last_error_message=account.last_error_message,
        last_error_at=account.last_error_at,
        next_free_soon=free_at is not None and free_at - now < timedelta(minutes=1),
    )


# The dashboard warns this long before an account's refresh token expires (its JWT ``exp``, ~90 days).
TOKEN_WARNING = timedelta(days=14)


@dataclasses.dataclass(frozen=True)
class TokenExpiry:
    id: int
    name: str
    state: str
    expires_at: datetime
    days: int  # whole days left; negative once expired

    @property
    def expired(self) -> bool:
        return self.days < 0


def tokens_expiring(*, now: datetime, within: timedelta = TOKEN_WARNING) -> list[TokenExpiry]:
    """Pool accounts (not disabled) whose refresh token expires within ``within`` or has expired, soonest
    first: a new token must be pasted before they turn ``invalid``."""
    accounts = (
        KimiAccount.objects.filter(source=AccountSource.POOL, token_expires_at__lte=now + within)
        .exclude(refresh_token_enc="")
        .exclude(state=AccountState.DISABLED)
        .order_by("token_expires_at", "name")
    )
    return [
        TokenExpiry(a.pk, a.name, a.state, a.token_expires_at, (a.token_expires_at - now) // timedelta(days=1))
        for a in accounts
        if a.token_expires_at is not None
    ]


def state_counts(usage: list[AccountUsage]) -> dict[str, int]:
    counts = {state.value: 0 for state in AccountState}
    for account in usage:
        counts[account.state] += 1
    return counts


def leftover_conversations(*, now: datetime) -> int:
    """Chats still upstream that should not be: awaiting or failing delete, or kept past their TTL."""
    ttl = timedelta(hours=settings.KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS)
    leftover = Q(state__in=[ConversationState.PENDING_DELETE, ConversationState.DELETE_FAILED]) | Q(
        state=ConversationState.KEPT, last_used_at__lt=now - ttl
    )
    return Conversation.objects.filter(leftover).count()
