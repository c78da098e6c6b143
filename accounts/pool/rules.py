"""The pool's rules, stated once: pure data and functions, no database.

Both paths read them: the ORM reference (``orm.py``) and the Postgres fast path (``pg.py``, which
renders them into ``sql/reserve_turn.sql``; gateway/db/finish_sql.py renders the release table too). A
rule the SQL restates by hand (the ranking, the two-step exactness) is checked against the ORM by the
parity tests in tests/postgres/parity/. How to change one: README.md in this folder.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from accounts import limits
from accounts.choices import AccountSource, AccountState, LeaseOutcome, LimitMode, TurnStatus

# --- Eligibility ------------------------------------------------------------------------------------------

# Accounts in these states serve no turn and are never revived by a release.
UNUSABLE_STATES = frozenset({AccountState.INVALID, AccountState.DISABLED})
# Without an explicit list of account ids a request may use only these (pass-through accounts serve
# only the client whose token they hold, by id).
POOL_SOURCE = AccountSource.POOL


def is_usable(*, state: str, cooldown_until: datetime | None, now: datetime) -> bool:
    """Not invalid or disabled, and not cooling down (a cooldown ending at ``now`` is over)."""
    return state not in UNUSABLE_STATES and (cooldown_until is None or cooldown_until <= now)


# A counted turn: any turn but a refunded one, started inside the account's window
# (``limits.window_start``: strictly after ``now - window``).
UNCOUNTED_STATUS = TurnStatus.REFUNDED
# A live lease: an in-flight turn whose lease has not expired. An expired one stops blocking at once
# (a crashed worker never blocks an account) but still counts against the window.
LIVE_STATUS = TurnStatus.IN_FLIGHT


# --- The limit ---------------------------------------------------------------------------------------------

# An account's limit now: in ``learn`` mode the count it had served when the upstream last refused it for
# quota, for ``limits.LEARNED_LIMIT_SECONDS`` after that refusal and never above the operator's
# ``turn_limit`` (its cap); otherwise ``turn_limit``. The arithmetic lives in accounts/limits.py (the
# selectors need it too); sql/reserve_turn.sql states it again, rendered from the same values.
LEARN_MODE = LimitMode.LEARN
effective_limit = limits.effective_limit
learned_limit = limits.learned_limit


def has_room(*, used: int, live: int, turn_limit: int, max_concurrent: int) -> bool:
    """Under the window's limit and under the concurrency cap, by the exact counts."""
    return used < turn_limit and live < max_concurrent


# --- Ranking ----------------------------------------------------------------------------------------------

# The ranking counts at most this many of an account's turns: enough to compare real accounts (Kimi
# allows 30 per window) while the count stays bounded however busy the window is. Only the ranking:
# whether an account may take the turn is decided by the exact count.
RANK_CAP = 100


def rank_key(
    *, used: int, turn_limit: int, last_used_at: datetime | None, account_id: int, rank_cap: int = RANK_CAP
) -> tuple[int, float, int]:
    """Smaller is better: the most remaining turns, then the least recently used (never used first),
    then the lowest id."""
    remaining = turn_limit - min(used, turn_limit, rank_cap)
    last = last_used_at.timestamp() if last_used_at is not None else float("-inf")
    return (-remaining, last, account_id)


# --- Taking a turn ----------------------------------------------------------------------------------------

# The turn row a reservation writes (besides account, started_at = now, lease_expires_at and request_id).
TAKEN_TURN: Mapping[str, object] = MappingProxyType({"status": TurnStatus.IN_FLIGHT, "outcome": ""})
# The account columns it sets (besides last_used_at = now, total_turns + 1, updated_at = now): a
# cooling or exhausted account whose cooldown has passed is back in service.
TAKEN_ACCOUNT: Mapping[str, object] = MappingProxyType({"state": AccountState.ACTIVE})
REQUEST_ID_CHARS = 64


def lease_expires_at(*, now: datetime, lease_seconds: float) -> datetime:
    return now + timedelta(seconds=lease_seconds)


# --- Release: outcome -> account change -------------------------------------------------------------------


class Effect(enum.Enum):
    """What a released turn's outcome does to its account."""

    HEAL = "heal"  # active again, cooldown and backoff cleared
    INVALIDATE = "invalidate"  # the token was rejected: invalid until an admin acts
    EXHAUST = "exhaust"  # rate limited: exhausted until the upstream's retry time or the window frees
    COOL = "cool"  # a transient upstream failure: cooling with exponential backoff
    NONE = "none"  # the client's doing: the account is left alone


OUTCOME_EFFECTS: Mapping[str, Effect] = MappingProxyType(
    {
        LeaseOutcome.OK: Effect.HEAL,
        LeaseOutcome.AUTH: Effect.INVALIDATE,
        LeaseOutcome.RATE_LIMITED: Effect.EXHAUST,
        LeaseOutcome.OVERLOADED: Effect.COOL,
        LeaseOutcome.UNAVAILABLE: Effect.COOL,
        # The refresh's own policy (gateway/kimi/tokens.py, kimi-web-protocol.md C.11) already cooled
        # the account with backoff and counts the refusals; cooling it again here would double the backoff.
        LeaseOutcome.REFRESH_REFUSED: Effect.NONE,
        LeaseOutcome.TIMEOUT: Effect.COOL,
        LeaseOutcome.STREAM_BUSY: Effect.COOL,
        LeaseOutcome.PROTOCOL_ERROR: Effect.COOL,
        LeaseOutcome.UPSTREAM_ERROR: Effect.COOL,
        LeaseOutcome.CLIENT_CLOSED: Effect.NONE,
        LeaseOutcome.BAD_REQUEST: Effect.NONE,
        LeaseOutcome.CONTENT_FILTERED: Effect.NONE,
    }
)
# The states each effect leaves as they are: nothing revives a disabled account, and only an admin
# revives an invalid one (a release of an invalid account's late turn must not).
SPARED_STATES: Mapping[Effect, frozenset[str]] = MappingProxyType(
    {
        Effect.HEAL: UNUSABLE_STATES,
        Effect.INVALIDATE: frozenset({AccountState.DISABLED}),
        Effect.EXHAUST: UNUSABLE_STATES,
        Effect.COOL: UNUSABLE_STATES,
        Effect.NONE: frozenset(AccountState.values),
    }
)
# A heal also leaves an account in this state while its time (``cooldown_until``) is still ahead: a turn
# that started before a quota refusal and ended well says nothing against the refusal's reset time.
HEAL_SPARES_UNTIL_AHEAD = AccountState.EXHAUSTED
# Effects that record the error on the account (last_error_*, total_errors + 1), spared state or not.
RECORDS_ERROR = frozenset({Effect.INVALIDATE, Effect.EXHAUST, Effect.COOL})
# A healed account's columns; one already like this is not written at all.
HEALED: Mapping[str, object] = MappingProxyType(
    {"state": AccountState.ACTIVE, "cooldown_until": None, "backoff_level": 0}
)
MAX_BACKOFF_LEVEL = 100
ERROR_MESSAGE_CHARS = 500


def effect_of(outcome: str) -> Effect:
    """The effect of a release outcome; ``ValueError`` for anything else (``lease_expired`` included:
    only the reclaim writes it)."""
    try:
        return OUTCOME_EFFECTS[outcome]
    except KeyError:
        raise ValueError(f"unknown lease outcome {outcome!r}") from None


def released_status(*, refund: bool) -> TurnStatus:
    """A refunded turn stops counting: the upstream did no generation work."""
    return TurnStatus.REFUNDED if refund else TurnStatus.DONE


def exhausted_until(
    *,
    now: datetime,
    retry_after: float | None,
    oldest_counted: datetime | None,
    window_seconds: int,
    reset_at: datetime | None = None,
) -> datetime:
    """The upstream's reset time (``reset_at``, or ``now + retry_after``) when it gave one still ahead;
    otherwise when the window frees the oldest counted turn (kimi-web-protocol.md C.13)."""
    if reset_at is not None and reset_at > now:
        return reset_at
    if retry_after is not None and retry_after > 0:
        return now + timedelta(seconds=retry_after)
    free = limits.next_free_at(oldest_counted=oldest_counted, window_seconds=window_seconds)
    return free or now + timedelta(seconds=window_seconds)


def error_change(
    *,
    effect: Effect,
    outcome: str,
    state: str,
    backoff_level: int,
    message: str,
    now: datetime,
    cooldown_base: float,
    until_exhausted: Callable[[], datetime],
) -> dict[str, object]:
    """The account columns a release with an error ``effect`` sets (besides ``total_errors + 1``).

    ``until_exhausted`` is asked only for a rate limit on an account it may change (it can need a query).
    A healing release is the conditional update ``HEALED`` / ``SPARED_STATES`` instead: no read first.
    """
    assert effect in RECORDS_ERROR, effect
    fields: dict[str, object] = {
        "updated_at": now,
        "last_error_code": outcome,
        "last_error_message": message[:ERROR_MESSAGE_CHARS],
        "last_error_at": now,
    }
    if state in SPARED_STATES[effect]:
        return fields
    if effect is Effect.INVALIDATE:
        fields.update(state=AccountState.INVALID, cooldown_until=None)
    elif effect is Effect.EXHAUST:
        fields.update(state=AccountState.EXHAUSTED, cooldown_until=until_exhausted())
    else:
        level = backoff_level + 1
        wait = limits.cooldown_seconds(base=cooldown_base, level=level)
        fields.update(
            state=AccountState.COOLING,
            backoff_level=min(level, MAX_BACKOFF_LEVEL),
            cooldown_until=now + timedelta(seconds=wait),
        )
    return fields


def refusal_change(*, limit_mode: str, served: int, cap: int, now: datetime) -> dict[str, object]:
    """The account columns an explicit quota refusal after ``served`` counted turns sets: the learned
    limit in learn mode, nothing when pinned (the refusal is recorded either way)."""
    if limit_mode != LEARN_MODE:
        return {}
    return {"learned_limit": learned_limit(served=served, cap=cap), "learned_at": now}


# Effects the final write on Postgres applies in its one statement (gateway/db/finish_sql.py): those that
# need no read of the account. The others take the ORM's transaction.
ONE_STATEMENT_EFFECTS = frozenset({Effect.HEAL, Effect.NONE})
