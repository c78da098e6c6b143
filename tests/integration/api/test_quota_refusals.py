"""Quota refusals (kimi-web-protocol.md C.13): every form, both protocols, end to end.

The account becomes ``exhausted`` until the reset time the upstream gave (or, without one, until its
oldest counted turn leaves the window), the refused turn is refunded, the client's 429 carries a
``Retry-After`` for that time, and the account comes back by itself at it (the clock is injected into
the reservation).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import openai
import pytest

from accounts.models import KimiAccount, Turn
from accounts.pool import NoAccountAvailable, account_reserve
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks
from tests.integration.api.helpers import client_for, pool_account

RESET_IN = 7200  # seconds; shorter than the account's 3 h window, so a wrong fallback would show

# (protocol, fault options, how the reset time is given: "reset" | "seconds" | "window")
FORMS = [
    ("connect", {}, "reset"),  # 0x02 resource_exhausted, debug.resetTime
    ("connect", {}, "seconds"),  # 0x02 resource_exhausted, debug.retryAfterSeconds (+ Retry-After)
    ("connect", {}, "window"),  # 0x02 resource_exhausted without T
    ("connect", {"reason": "REASON_DAILY_QUOTA"}, "reset"),  # any quota reason
    ("connect", {"variant": "http"}, "reset"),  # HTTP 429 with the Connect error body
    ("connect", {"variant": "exception"}, "reset"),  # in-stream notice: block.exception
    ("connect", {"variant": "exception"}, "window"),
    ("legacy", {}, "reset"),  # SSE error event chat.quota_exceeded, detail.resetTime
    ("legacy", {}, "seconds"),  # detail.retry_after
    ("legacy", {}, "window"),
    ("legacy", {"variant": "http"}, "reset"),  # HTTP 429 error_type body
]


def _scripted(e2e, options, given, now):
    reset = (now + timedelta(seconds=RESET_IN)).replace(microsecond=0)
    if given == "reset":
        options = {**options, "reset_time": reset.isoformat().replace("+00:00", "Z")}
    elif given == "seconds":
        options = {**options, "retry_after": RESET_IN}
    e2e.fake.fault("rate_limited", account="quota", **options)
    return reset


@pytest.mark.parametrize(("protocol", "options", "given"), FORMS)
def test_a_quota_refusal_exhausts_the_account_until_its_reset_time(e2e, protocol, options, given):
    # Pinned: a learned limit (test_learned_limits.py) would keep the first turn's slot closed past the reset.
    account = pool_account(e2e.fake, "quota", protocol=protocol, limit_mode="pinned")
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "served"}])
    first = Turn.objects.get(account=account)
    now = datetime.now(UTC)
    reset = _scripted(e2e, options, given, now)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "refused"}])

    wait_for_background_tasks()
    account.refresh_from_db()
    expected = first.started_at + timedelta(seconds=account.window_seconds) if given == "window" else reset
    assert account.state == "exhausted", (account.cooldown_until, account.last_error_code, account.last_error_message)
    if given == "seconds":  # relative to the moment of the refusal
        assert abs((account.cooldown_until - expected).total_seconds()) < 5
    else:
        assert account.cooldown_until == expected
    retry_after = int(caught.value.response.headers["Retry-After"])
    assert abs(now + timedelta(seconds=retry_after) - account.cooldown_until) < timedelta(seconds=5)
    refused = Turn.objects.filter(account=account).exclude(pk=first.pk).get()
    assert refused.status == "refunded"  # the upstream did no work
    # Back by itself once the reset time has come, and not a moment before.
    with pytest.raises(NoAccountAvailable) as none:
        account_reserve(now=account.cooldown_until - timedelta(seconds=1))
    assert (none.value.reason, none.value.retry_at) == ("exhausted", account.cooldown_until)
    lease = account_reserve(now=account.cooldown_until)
    assert lease.account_id == account.pk
    assert KimiAccount.objects.get(pk=account.pk).state == "active"


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_a_bare_429_with_retry_after_exhausts_the_account_for_that_long(e2e, protocol):
    account = pool_account(e2e.fake, "edge", protocol=protocol)
    _, raw = make_api_key()
    e2e.fake.fault("http_429", account="edge", retry_after=900)
    now = datetime.now(UTC)

    with pytest.raises(openai.RateLimitError) as caught:
        client_for(e2e.url, raw).chat.completions.create(model="kimi", messages=[{"role": "user", "content": "x"}])

    wait_for_background_tasks()
    account.refresh_from_db()
    assert account.state == "exhausted"
    assert abs((account.cooldown_until - (now + timedelta(seconds=900))).total_seconds()) < 5
    assert 895 <= int(caught.value.response.headers["Retry-After"]) <= 901
    assert Turn.objects.get(account=account).status == "refunded"


def test_a_refused_account_fails_over_to_the_next_one(e2e):
    first = pool_account(e2e.fake, "quota")
    second = pool_account(e2e.fake, "spare")
    KimiAccount.objects.filter(pk=second.pk).update(last_used_at="2030-01-01T00:00:00Z")
    _, raw = make_api_key()
    reset = _scripted(e2e, {}, "reset", datetime.now(UTC))
    e2e.fake.reply(text="served")

    answer = client_for(e2e.url, raw).chat.completions.create(model="kimi", messages=[{"role": "user", "content": "x"}])

    assert answer.choices[0].message.content == "served"
    wait_for_background_tasks()
    first.refresh_from_db()
    assert (first.state, first.cooldown_until) == ("exhausted", reset)
