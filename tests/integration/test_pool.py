"""The pool services (accounts.pool) against the database, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts import pool
from accounts.choices import AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.selectors import account_usage
from accounts.services import account_for_passthrough_token
from tests.factories import make_account, make_jwt

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reserve_and_finish(*, now: datetime, **kwargs: object) -> pool.Lease:
    lease = pool.account_reserve(now=now, **kwargs)  # type: ignore[arg-type]
    pool.lease_release(lease=lease, outcome="ok", now=now)
    return lease


def test_it_counts_turns_in_a_sliding_window() -> None:
    account = make_account(limit=2, window_hours=1)
    reserve_and_finish(now=at(0))
    reserve_and_finish(now=at(10))

    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(59))
    assert (exc.value.reason, exc.value.retry_at) == ("exhausted", at(60))
    usage = account_usage(account=account, now=at(59))
    assert (usage.used, usage.limit, usage.next_free_at) == (2, 2, at(60))

    # At exactly one window after the first turn, it stops counting and one turn is free again.
    assert pool.account_reserve(now=at(60)).account_id == account.pk
    usage = account_usage(account=account, now=at(61))
    assert (usage.used, usage.in_flight, usage.next_free_at) == (2, 1, at(70))
    assert account_usage(account=account, now=at(200)).used == 0


def test_it_stops_counting_refunded_turns() -> None:
    make_account(limit=1, window_hours=1)
    lease = pool.account_reserve(now=at(0))
    pool.lease_release(lease=lease, outcome="unavailable", refund=True, now=at(0))
    KimiAccount.objects.update(cooldown_until=None)  # isolate the refund from the cooldown
    assert pool.account_reserve(now=at(1)).account_id == lease.account_id
    assert Turn.objects.get(pk=lease.turn_id).status == TurnStatus.REFUNDED


def test_it_picks_the_account_with_the_most_remaining_turns() -> None:
    busy = make_account(limit=5)
    fresh = make_account(limit=5)
    reserve_and_finish(now=at(0), account_ids=[busy.pk])
    assert pool.account_reserve(now=at(1)).account_id == fresh.pk


def _used_turns(account: KimiAccount, count: int, *, now: datetime) -> None:
    Turn.objects.bulk_create(
        Turn(account=account, started_at=now, status=TurnStatus.DONE, lease_expires_at=now) for _ in range(count)
    )


def test_it_counts_exactly_past_the_ranking_cap() -> None:
    # The ranking counts at most rules.RANK_CAP (100) turns; the limit check stays exact.
    full = make_account(limit=150, window_hours=1)
    roomy = make_account(limit=200, window_hours=1)
    _used_turns(full, 150, now=at(0))
    _used_turns(roomy, 150, now=at(0))

    assert pool.account_reserve(now=at(1)).account_id == roomy.pk  # 150 of 200 used: it still serves
    _used_turns(roomy, 49, now=at(1))
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(2))  # both at their limits, well past the cap
    assert exc.value.reason == "exhausted"


def test_it_breaks_ties_by_least_recently_used() -> None:
    recent = make_account(last_used_at=at(-1))
    older = make_account(last_used_at=at(-30))
    lease = pool.account_reserve(now=at(0))
    assert lease.account_id == older.pk
    assert (lease.account_name, lease.protocol) == (older.name, "connect")
    older.refresh_from_db()
    assert (older.last_used_at, older.total_turns) == (at(0), 1)
    assert recent.pk != older.pk


def test_it_respects_the_concurrency_cap_and_says_busy() -> None:
    make_account(max_concurrent=1)
    lease = pool.account_reserve(now=at(0))
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(1))
    assert (exc.value.reason, exc.value.retry_at) == ("busy", None)
    pool.lease_release(lease=lease, outcome="ok", now=at(2))
    assert pool.account_reserve(now=at(3)).account_id == lease.account_id


def test_it_stops_counting_a_stale_lease_against_concurrency_and_reclaims_it(settings) -> None:
    settings.KIMIPROXY_LEASE_TIMEOUT = 60
    make_account(max_concurrent=1, limit=10)
    stale = pool.account_reserve(now=at(0))
    assert pool.account_reserve(now=at(2)).account_id == stale.account_id  # lease expired at 1 min
    assert pool.lease_reclaim_stale(now=at(2)) == 1
    turn = Turn.objects.get(pk=stale.turn_id)
    assert (turn.status, turn.outcome) == (TurnStatus.DONE, "lease_expired")  # still counts
    assert account_usage(account=turn.account, now=at(2)).used == 2
    pool.lease_release(lease=stale, outcome="ok", refund=True, now=at(3))  # late release: no-op
    assert Turn.objects.get(pk=stale.turn_id).status == TurnStatus.DONE


def test_it_marks_an_account_invalid_on_auth_failure() -> None:
    account = make_account()
    lease = pool.account_reserve(now=at(0))
    pool.lease_release(lease=lease, outcome="auth", refund=True, message="token rejected", now=at(1))
    account.refresh_from_db()
    assert (account.state, account.last_error_code, account.last_error_message) == ("invalid", "auth", "token rejected")
    assert (account.last_error_at, account.total_errors) == (at(1), 1)
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(2))
    assert (exc.value.reason, exc.value.retry_at) == ("invalid", None)


def test_it_exhausts_until_the_upstream_retry_time() -> None:
    account = make_account(limit=10)
    lease = pool.account_reserve(now=at(0))
    pool.lease_release(lease=lease, outcome="rate_limited", retry_after=600, now=at(0))
    account.refresh_from_db()
    assert (account.state, account.cooldown_until) == (AccountState.EXHAUSTED, at(10))
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(5))
    assert (exc.value.reason, exc.value.retry_at) == ("exhausted", at(10))
    assert pool.account_reserve(now=at(10)).account_id == account.pk  # no job needed
    account.refresh_from_db()
    assert account.state == AccountState.ACTIVE


def test_it_exhausts_until_the_upstream_reset_time() -> None:
    account = make_account(limit=10)
    lease = pool.account_reserve(now=at(0))
    pool.lease_release(lease=lease, outcome="rate_limited", reset_at=at(90), retry_after=5, quota=True, now=at(0))
    account.refresh_from_db()
    assert (account.state, account.cooldown_until) == (AccountState.EXHAUSTED, at(90))  # the absolute time wins


def test_a_turn_ending_well_after_a_quota_refusal_does_not_revive_the_account() -> None:
    account = make_account(limit=10, max_concurrent=2, limit_mode="pinned")  # no learned limit in the way
    long_turn = pool.account_reserve(now=at(0))
    refused = pool.account_reserve(now=at(1))
    pool.lease_release(lease=refused, outcome="rate_limited", refund=True, reset_at=at(60), quota=True, now=at(1))
    pool.lease_release(lease=long_turn, outcome="ok", now=at(2))
    account.refresh_from_db()
    assert (account.state, account.cooldown_until) == (AccountState.EXHAUSTED, at(60))
    # Once its time has passed, a success heals it as usual.
    late = pool.account_reserve(now=at(60))
    pool.lease_release(lease=late, outcome="ok", now=at(61))
    account.refresh_from_db()
    assert (account.state, account.cooldown_until) == (AccountState.ACTIVE, None)


def test_it_exhausts_until_the_window_frees_without_a_retry_time() -> None:
    account = make_account(limit=10, window_hours=1)
    reserve_and_finish(now=at(0))
    lease = pool.account_reserve(now=at(20))
    pool.lease_release(lease=lease, outcome="rate_limited", now=at(20))
    account.refresh_from_db()
    assert account.cooldown_until == at(60)


def test_it_cools_down_with_exponential_backoff_and_resets_on_success(settings) -> None:
    settings.KIMIPROXY_COOLDOWN_SECONDS = 30
    account = make_account(limit=100)
    expected = [30, 60, 120]
    now = at(0)
    for seconds in expected:
        lease = pool.account_reserve(now=now)
        pool.lease_release(lease=lease, outcome="overloaded", refund=True, now=now)
        account.refresh_from_db()
        assert (account.state, account.cooldown_until) == (AccountState.COOLING, now + timedelta(seconds=seconds))
        with pytest.raises(pool.NoAccountAvailable) as exc:
            pool.account_reserve(now=now + timedelta(seconds=1))
        assert (exc.value.reason, exc.value.retry_at) == ("cooling", account.cooldown_until)
        now = account.cooldown_until
    reserve_and_finish(now=now)
    account.refresh_from_db()
    assert (account.state, account.backoff_level, account.cooldown_until) == (AccountState.ACTIVE, 0, None)


@pytest.mark.parametrize("outcome", ["client_closed", "bad_request", "content_filtered"])
def test_it_leaves_the_account_alone_on_client_side_outcomes(outcome: str) -> None:
    account = make_account()
    lease = pool.account_reserve(now=at(0))
    pool.lease_release(lease=lease, outcome=outcome, now=at(1))
    account.refresh_from_db()
    assert (account.state, account.total_errors, account.last_error_code) == (AccountState.ACTIVE, 0, "")
    assert Turn.objects.get(pk=lease.turn_id).status == TurnStatus.DONE


def test_it_never_revives_a_disabled_account_on_release() -> None:
    account = make_account()
    lease = pool.account_reserve(now=at(0))
    KimiAccount.objects.filter(pk=account.pk).update(state=AccountState.DISABLED)
    pool.lease_release(lease=lease, outcome="ok", now=at(1))
    account.refresh_from_db()
    assert account.state == AccountState.DISABLED
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(2))
    assert exc.value.reason == "disabled"


def test_it_refuses_an_unknown_outcome() -> None:
    make_account()
    lease = pool.account_reserve(now=at(0))
    with pytest.raises(ValueError, match="unknown lease outcome"):
        pool.lease_release(lease=lease, outcome="weird", now=at(1))
    assert Turn.objects.get(pk=lease.turn_id).status == TurnStatus.IN_FLIGHT


def test_it_reports_the_earliest_time_among_blocked_accounts() -> None:
    make_account(limit=1, window_hours=1)
    make_account(limit=1, window_hours=2)
    reserve_and_finish(now=at(0))
    reserve_and_finish(now=at(5))
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(10))
    assert exc.value.retry_at in (at(60), at(65))  # whichever account took the first turn
    assert exc.value.reason == "exhausted"


def test_it_filters_by_protocol_ids_and_exclusions() -> None:
    connect = make_account(protocol="connect")
    legacy = make_account(protocol="legacy")
    assert pool.account_reserve(now=at(0), protocol="legacy").account_id == legacy.pk
    assert pool.account_reserve(now=at(0), exclude=[legacy.pk]).account_id == connect.pk
    assert pool.account_reserve(now=at(0), account_ids=[legacy.pk]).protocol == "legacy"
    with pytest.raises(pool.NoAccountAvailable) as exc:
        pool.account_reserve(now=at(0), protocol="legacy", exclude=[legacy.pk])
    assert (exc.value.reason, exc.value.retry_at) == ("none", None)


def test_it_uses_passthrough_accounts_only_when_asked_by_id() -> None:
    account = account_for_passthrough_token(token=make_jwt())
    with pytest.raises(pool.NoAccountAvailable):
        pool.account_reserve(now=at(0))
    assert pool.account_reserve(now=at(0), account_ids=[account.pk]).account_id == account.pk


def test_it_reserves_with_few_queries(django_assert_max_num_queries) -> None:
    for _ in range(5):
        make_account()
    # SELECT ... FOR UPDATE, one aggregate count, INSERT turn, UPDATE account (+ savepoint statements).
    with django_assert_max_num_queries(6):
        pool.account_reserve(now=at(0))
