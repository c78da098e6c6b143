"""The pool's rules (accounts/pool/rules.py) as pure functions, and the map from upstream errors to the
lease outcomes they release with (gateway/chat/settle.py ``lease_outcome``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts.choices import AccountState, LeaseOutcome
from accounts.pool import rules
from gateway.chat.attempt import AttemptCancelled
from gateway.chat.settle import lease_outcome
from gateway.kimi import base

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _all_kimi_errors() -> list[type[base.KimiError]]:
    found, todo = [], [base.KimiError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("error", _all_kimi_errors(), ids=lambda cls: cls.__name__)
def test_every_upstream_error_releases_with_an_outcome_the_table_knows(error: type[base.KimiError]) -> None:
    outcome = lease_outcome(error("x"))
    assert isinstance(outcome, LeaseOutcome)
    assert outcome in rules.OUTCOME_EFFECTS


def test_timeouts_cool_refused_files_and_cancellations_leave_the_account_alone() -> None:
    assert lease_outcome(base.IdleTimeout()) == LeaseOutcome.TIMEOUT
    assert rules.effect_of(lease_outcome(base.FileRejected())) is rules.Effect.NONE
    assert rules.effect_of(lease_outcome(AttemptCancelled())) is rules.Effect.NONE
    assert rules.effect_of(lease_outcome(base.KimiError())) is rules.Effect.COOL


def test_a_reclaimed_lease_is_not_a_release_outcome() -> None:
    with pytest.raises(ValueError, match="unknown lease outcome"):
        rules.effect_of(LeaseOutcome.LEASE_EXPIRED)


def test_the_ranking_prefers_remaining_turns_then_the_least_recently_used_then_the_lowest_id() -> None:
    def key(used: int, last: datetime | None, pk: int, cap: int = rules.RANK_CAP) -> tuple[int, float, int]:
        return rules.rank_key(used=used, turn_limit=5, last_used_at=last, account_id=pk, rank_cap=cap)

    assert key(1, NOW, 9) < key(2, None, 1)
    assert key(1, None, 9) < key(1, NOW - timedelta(days=1), 1) < key(1, NOW, 1) < key(1, NOW, 2)
    assert key(3, NOW, 1, cap=2) == key(4, NOW, 1, cap=2)  # past the cap, counts no longer rank


@pytest.mark.parametrize("state", sorted(rules.UNUSABLE_STATES))
def test_an_error_release_records_the_error_but_never_revives_an_unusable_account(state: str) -> None:
    for outcome in (LeaseOutcome.RATE_LIMITED, LeaseOutcome.OVERLOADED):
        fields = rules.error_change(
            effect=rules.effect_of(outcome),
            outcome=outcome,
            state=state,
            backoff_level=0,
            message="m" * 600,
            now=NOW,
            cooldown_base=30,
            until_exhausted=lambda: pytest.fail("not asked for a spared account"),
        )
        assert "state" not in fields and fields["last_error_code"] == outcome
        assert fields["last_error_message"] == "m" * rules.ERROR_MESSAGE_CHARS


def test_a_rejected_token_invalidates_all_but_a_disabled_account() -> None:
    def state_after(state: str) -> object:
        fields = rules.error_change(
            effect=rules.Effect.INVALIDATE,
            outcome=LeaseOutcome.AUTH,
            state=state,
            backoff_level=0,
            message="",
            now=NOW,
            cooldown_base=30,
            until_exhausted=lambda: NOW,
        )
        return fields.get("state")

    assert state_after(AccountState.COOLING) == AccountState.INVALID
    assert state_after(AccountState.DISABLED) is None


def test_backoff_doubles_and_its_level_is_capped() -> None:
    fields = rules.error_change(
        effect=rules.Effect.COOL,
        outcome=LeaseOutcome.UNAVAILABLE,
        state=AccountState.COOLING,
        backoff_level=rules.MAX_BACKOFF_LEVEL,
        message="",
        now=NOW,
        cooldown_base=30,
        until_exhausted=lambda: NOW,
    )
    assert fields["backoff_level"] == rules.MAX_BACKOFF_LEVEL
    assert fields["state"] == AccountState.COOLING and fields["cooldown_until"] == NOW + timedelta(seconds=600)
