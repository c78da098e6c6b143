"""Checking accounts without spending a turn (kimi-web-protocol.md C.10), and what refused refreshes do
to an account (C.11). Time is injected: checks pass ``now`` instead of sleeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.choices import AccountState
from accounts.models import KimiAccount, Turn
from accounts.services import account_check_now
from gateway.kimi.fake import FakeKimi
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def fake_account(fake: FakeKimi, name: str = "alice", **options: Any) -> KimiAccount:
    minted = fake.mint_account(name, **options)
    return make_account(name=name, token=minted.refresh_token, protocol=minted.protocol)


@pytest.mark.parametrize(
    ("protocol", "paid", "plan", "level", "calls"),
    [
        ("connect", True, "Moderato", 40, {"refresh": 1, "user": 1, "plan": 1, "subscription": 1}),
        ("connect", False, "free", 10, {"refresh": 1, "user": 1, "plan": 1, "subscription": 1}),
        ("legacy", False, "", None, {"refresh": 1, "user": 1}),
    ],
)
def test_a_check_spends_no_turn_and_records_the_plan(
    fake_kimi: FakeKimi, protocol: str, paid: bool, plan: str, level: int | None, calls: dict[str, int]
) -> None:
    account = fake_account(fake_kimi, protocol=protocol, paid=paid)

    result = account_check_now(account=account)

    assert result.live and result.verdict == "live"
    assert fake_kimi.stats()["calls"] == calls  # exactly these: no chat, create_chat or stream
    account.refresh_from_db()
    assert (account.plan, account.membership_level) == (plan, level)
    assert account.subscription_status == ("SUBSCRIPTION_STATUS_ACTIVE" if paid else "")
    assert account.checked_at is not None
    assert not Turn.objects.exists()


def test_a_check_of_a_dead_token_says_invalid_and_still_spends_no_turn(fake_kimi: FakeKimi) -> None:
    account = fake_account(fake_kimi)
    fake_kimi.revoke_refresh("alice")

    result = account_check_now(account=account)

    assert (result.verdict, result.facts) == ("invalid", None)
    assert fake_kimi.stats()["calls"] == {"refresh": 1}
    account.refresh_from_db()
    assert account.state == AccountState.INVALID and account.checked_at is not None


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_a_filtered_refresh_cools_the_account_and_only_refusals_over_ten_minutes_invalidate_it(
    fake_kimi: FakeKimi, protocol: str
) -> None:
    account = fake_account(fake_kimi, protocol=protocol)
    fake_kimi.fault("forbidden_html", times=None)  # a filter answers every refresh with an HTML 403
    start = timezone.now()

    for minutes, failures in ((0, 1), (1, 2), (2, 3), (6, 4)):  # three and more, but within ten minutes
        result = account_check_now(account=account, now=start + timedelta(minutes=minutes))
        account.refresh_from_db()
        assert (result.verdict, account.state, account.refresh_failures) == ("cooling", "cooling", failures)
        assert account.cooldown_until is not None and account.refresh_failing_since == start
    assert account.backoff_level == 4  # the cooldown grows with each refusal

    result = account_check_now(account=account, now=start + timedelta(minutes=10))

    account.refresh_from_db()
    assert (result.verdict, account.state, account.last_error_code) == ("invalid", "invalid", "auth")
    assert "5 times since" in account.last_error_message
    assert fake_kimi.count("refresh") == 5 and fake_kimi.count("chat") + fake_kimi.count("create_chat") == 0


def test_a_successful_refresh_starts_the_count_again(fake_kimi: FakeKimi, settings: Any) -> None:
    settings.KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID = 2
    account = fake_account(fake_kimi)
    start = timezone.now()
    fake_kimi.fault("forbidden_html")
    assert account_check_now(account=account, now=start).verdict == "cooling"

    assert account_check_now(account=account, now=start + timedelta(minutes=20)).live
    account.refresh_from_db()
    assert (account.refresh_failures, account.refresh_failing_since) == (0, None)

    # Without the reset this would be the second refusal, 30 minutes after the first: invalid.
    fake_kimi.fault("forbidden_html")
    assert account_check_now(account=account, now=start + timedelta(minutes=30)).verdict == "cooling"
    account.refresh_from_db()
    assert (account.state, account.refresh_failures) == ("cooling", 1)


def test_a_dead_token_answer_invalidates_at_once_whatever_the_count(fake_kimi: FakeKimi) -> None:
    account = fake_account(fake_kimi)
    fake_kimi.fault("refresh_invalid")  # 401 unauthenticated: the explicit dead-token answer (C.11)
    assert account_check_now(account=account).verdict == "invalid"
    account.refresh_from_db()
    assert (account.state, account.refresh_failures) == ("invalid", 0)
