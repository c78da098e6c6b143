"""Refresh tokens about to die: the days left in ``kimi_accounts list``, the dashboard's list of tokens
expiring within 14 days, and an expired token making its account ``invalid`` with that reason (without
a call upstream). Tokens are minted with a near ``exp``; time is injected."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.choices import AccountState
from accounts.models import KimiAccount
from accounts.probing import pool_probe_pass
from accounts.services import account_check_now
from gateway.kimi.fake import FakeKimi
from tests.factories import make_account, make_jwt

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),  # whitenoise: no collectstatic in tests
]


def listing(*args: str) -> str:
    out = io.StringIO()
    call_command("kimi_accounts", "list", *args, stdout=out)
    return out.getvalue()


def test_the_list_says_in_how_many_days_the_refresh_token_expires() -> None:
    now = timezone.now()
    make_account(name="soon", token=make_jwt(exp=(now + timedelta(days=5, hours=1)).timestamp()))
    make_account(name="today", token=make_jwt(exp=(now + timedelta(hours=3)).timestamp()))
    make_account(name="gone", token=make_jwt(exp=(now - timedelta(hours=23)).timestamp()))

    lines = listing().splitlines()
    header = lines[0].split("\t")
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in (line.split("\t") for line in lines[1:])}
    assert (rows["soon"]["token_expires_in"], rows["today"]["token_expires_in"]) == ("5 days", "today")
    assert rows["gone"]["token_expires_in"] == "expired"

    data = {row["name"]: row for row in map(json.loads, listing("--json").splitlines())}
    assert (data["soon"]["token_expires_in_days"], data["today"]["token_expires_in_days"]) == (5, 0)
    assert data["gone"]["token_expires_in_days"] == -1
    assert data["soon"]["check_verdict"] == ""  # never probed


def test_the_dashboard_lists_tokens_expiring_within_14_days(admin_client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = "tests.browser.urlconf"
    now = timezone.now()
    make_account(name="three-days", token=make_jwt(exp=(now + timedelta(days=3, hours=2)).timestamp()))
    make_account(name="month", token=make_jwt(exp=(now + timedelta(days=30)).timestamp()))
    make_account(name="dead", token=make_jwt(exp=(now - timedelta(hours=5)).timestamp()))
    make_account(name="off", token=make_jwt(exp=(now + timedelta(days=1)).timestamp()), state=AccountState.DISABLED)

    response = admin_client.get("/dashboard/")

    expiring = response.context["report"].expiring
    assert [(t.name, t.days) for t in expiring] == [("dead", -1), ("three-days", 3)]
    body = response.content.decode()
    body = body[body.index('id="expiring-table"') :]
    body = body[: body.index("</table>")]
    assert "in 3 days" in body and "expired 5" in body and ">month<" not in body


def test_an_expired_refresh_token_makes_the_account_invalid_without_asking_upstream(fake_kimi: FakeKimi) -> None:
    minted = fake_kimi.mint_account("alice", refresh_ttl=60)
    account = make_account(name="alice", token=minted.refresh_token)
    assert account.token_expires_at is not None

    result = account_check_now(account=account, now=timezone.now() + timedelta(minutes=2))

    assert result.verdict == "invalid" and "refresh token expired at" in result.message
    account.refresh_from_db()
    assert (account.state, account.last_error_code) == (AccountState.INVALID, "auth")
    assert account.last_error_message.startswith("refresh token expired at")
    assert fake_kimi.count("refresh") == 0 and fake_kimi.count("chat") == 0


def test_the_probe_finds_an_expired_token_and_says_so(fake_kimi: FakeKimi) -> None:
    minted = fake_kimi.mint_account("bob", refresh_ttl=60)
    make_account(name="bob", token=minted.refresh_token)

    items = pool_probe_pass(interval=600.0, refresh_margin=60.0, now=timezone.now() + timedelta(minutes=5))

    assert [(item.name, item.verdict, item.state_after) for item in items] == [("bob", "invalid", "invalid")]
    assert "refresh token expired" in KimiAccount.objects.get(name="bob").check_message
    assert fake_kimi.count("refresh") == 0
