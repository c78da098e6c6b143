"""Learned limits (issue 17): an explicit quota refusal teaches a learn-mode account its limit, for 24 h.

Pool services with an injected clock, then the whole path through the API against the fake Kimi, and
what ``kimi_accounts`` shows.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from accounts import pool
from accounts.models import KimiAccount, QuotaRefusal
from accounts.selectors import account_usage
from tests.factories import make_account, make_api_key, make_jwt
from tests.integration.api.helpers import client_for, pool_account

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def serve(n: int, *, start: float = 0) -> None:
    for i in range(n):
        lease = pool.account_reserve(now=at(start + i))
        pool.lease_release(lease=lease, outcome="ok", now=at(start + i))


def limit_at(account: KimiAccount, now: datetime) -> int:
    return account_usage(account=KimiAccount.objects.get(pk=account.pk), now=now).limit


def refuse(*, now: datetime, quota: bool = True, reset_at: datetime | None = None) -> None:
    lease = pool.account_reserve(now=now)
    pool.lease_release(lease=lease, outcome="rate_limited", refund=True, quota=quota, reset_at=reset_at, now=now)


@pytest.mark.django_db
@pytest.mark.parametrize(("mode", "limit"), [("learn", 12), ("pinned", 30)])
def test_a_refusal_after_12_turns_teaches_12_in_learn_mode_and_nothing_when_pinned(mode, limit):
    account = make_account(limit=30, limit_mode=mode)
    serve(12)
    refuse(now=at(12), reset_at=at(40))

    assert limit_at(account, at(41)) == limit
    refusal = QuotaRefusal.objects.get(account=account)
    assert (refusal.served, refusal.cap, refusal.learned, refusal.reset_at) == (
        12,
        30,
        12 if mode == "learn" else None,
        at(40),
    )
    # With 12 counted turns an account that learned 12 is full until the window frees one; pinned has room.
    if mode == "learn":
        with pytest.raises(pool.NoAccountAvailable) as none:
            pool.account_reserve(now=at(41))
        assert (none.value.reason, none.value.retry_at) == ("exhausted", at(0) + timedelta(hours=3))
    else:
        assert pool.account_reserve(now=at(41)).account_id == account.pk


@pytest.mark.django_db
def test_a_learned_limit_expires_24_hours_after_the_last_refusal():
    account = make_account(limit=30)
    serve(5)
    refuse(now=at(5))
    learned_at = KimiAccount.objects.get(pk=account.pk).learned_at
    assert learned_at == at(5)
    assert limit_at(account, at(5) + DAY - timedelta(seconds=1)) == 5
    assert limit_at(account, at(5) + DAY) == 30  # back to the cap

    # While it holds, it holds in every window; a later refusal starts the 24 h again with its own count.
    serve(5, start=600)
    with pytest.raises(pool.NoAccountAvailable):
        pool.account_reserve(now=at(606))
    serve(8, start=1500)
    refuse(now=at(1508))
    assert limit_at(account, at(1508) + DAY - timedelta(seconds=1)) == 8


@pytest.mark.django_db
def test_a_learned_limit_is_never_above_the_cap_nor_below_one():
    account = make_account(limit=3)
    refuse(now=at(0))  # refused before serving anything
    assert limit_at(account, at(1)) == 1
    KimiAccount.objects.filter(pk=account.pk).update(learned_limit=50)
    assert limit_at(account, at(1)) == 3


@pytest.mark.django_db
def test_a_bare_429_teaches_nothing():
    account = make_account(limit=30)
    serve(4)
    refuse(now=at(4), quota=False)
    assert limit_at(account, at(5)) == 30
    assert not QuotaRefusal.objects.exists()


def test_an_account_refused_by_the_fake_after_12_turns_learns_12(e2e):
    learner = pool_account(e2e.fake, "learner", limit=30)
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    for i in range(12):
        client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": f"turn {i}"}])
    e2e.fake.fault("rate_limited", account="learner")
    with pytest.raises(Exception):  # noqa: B017,PT011 - openai.RateLimitError; only the account's fate matters
        client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "one too many"}])

    out = io.StringIO()
    call_command("kimi_accounts", "list", "--json", stdout=out)
    row = json.loads(out.getvalue().splitlines()[0])
    assert (row["limit"], row["limit_mode"], row["limit_source"], row["cap"]) == (12, "learn", "learned", 30)
    assert row["state"] == "exhausted"
    assert QuotaRefusal.objects.get(account=learner).served == 12


@pytest.mark.django_db
def test_kimi_accounts_add_takes_a_limit_mode():
    out = io.StringIO()
    call_command("kimi_accounts", "add", "--name", "p", "--token", make_jwt(), "--limit-mode", "pinned", stdout=out)
    call_command("kimi_accounts", "add", "--name", "l", "--token", make_jwt(), "--limit", "20", stdout=out)
    assert dict(KimiAccount.objects.values_list("name", "limit_mode")) == {"p": "pinned", "l": "learn"}
    listing = io.StringIO()
    call_command("kimi_accounts", "list", stdout=listing)
    header, *rows = listing.getvalue().splitlines()
    assert header.split("\t")[7:9] == ["limit_mode", "limit_source"]
    assert [r.split("\t")[7:9] for r in rows] == [["learn", "cap"], ["pinned", "pinned"]]
