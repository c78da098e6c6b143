"""GetSubscriptionStats 5 h / 7 d windows (kimi-web-protocol.md C.10, C.13): recorded at every check, and a
window used up (ratio 1) exhausts the account until its reset time, like a chat's quota refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import pool
from accounts.models import KimiAccount, QuotaRefusal
from accounts.selectors import account_usage
from accounts.services import account_check_now
from gateway.kimi.fake import FakeKimi
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def rfc3339(when):  # type: ignore[no-untyped-def]
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def test_a_used_up_window_exhausts_the_account_until_its_reset_time(fake_kimi: FakeKimi) -> None:
    minted = fake_kimi.mint_account("coder", paid=True)
    account = make_account(name="coder", token=minted.refresh_token, limit=30)
    for _ in range(4):
        pool.lease_release(lease=pool.account_reserve(), outcome="ok")
    now = timezone.now()
    reset_5h = (now + timedelta(hours=2)).replace(microsecond=0)
    reset_7d = (now + timedelta(days=3)).replace(microsecond=0)
    fake_kimi.configure(
        ratelimit_5h={"ratio": 1, "enabled": True, "resetTime": rfc3339(reset_5h)},
        ratelimit_7d={"ratio": 0.25, "enabled": True, "resetTime": rfc3339(reset_7d)},
    )

    assert account_check_now(account=account).live

    account.refresh_from_db()
    assert (account.stats_5h_ratio, account.stats_5h_reset_at) == (1.0, reset_5h)
    assert (account.stats_7d_ratio, account.stats_7d_reset_at) == (0.25, reset_7d)
    assert (account.state, account.cooldown_until) == ("exhausted", reset_5h)
    refusal = QuotaRefusal.objects.get(account=account)
    assert (refusal.source, refusal.served, refusal.learned, refusal.reset_at) == ("stats_5h", 4, 4, reset_5h)
    assert account_usage(account=account, now=reset_5h).limit == 4  # learned, like a chat refusal
    assert fake_kimi.count("chat") == 0
    with pytest.raises(pool.NoAccountAvailable):
        pool.account_reserve(now=reset_5h - timedelta(seconds=1))


def test_a_window_with_room_is_recorded_and_changes_nothing(fake_kimi: FakeKimi) -> None:
    minted = fake_kimi.mint_account("roomy")
    account = make_account(name="roomy", token=minted.refresh_token)
    fake_kimi.configure(ratelimit_5h={"ratio": 0.5, "enabled": True, "resetTime": "2099-01-01T00:00:00Z"})

    account_check_now(account=account)

    account = KimiAccount.objects.get(pk=account.pk)
    assert (account.state, account.stats_5h_ratio, account.stats_7d_ratio) == ("active", 0.5, None)
    assert not QuotaRefusal.objects.exists()
