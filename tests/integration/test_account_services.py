"""Account services: create, import, enable/disable, reset window, token replacement, pass-through."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts import crypto, pool
from accounts.choices import AccountSource, AccountState, Protocol
from accounts.models import KimiAccount
from accounts.selectors import account_usage
from accounts.services import (
    account_create,
    account_disable,
    account_enable,
    account_for_passthrough_token,
    account_reset_window,
    account_set_token,
    accounts_import,
)
from tests.factories import make_account, make_jwt

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def raw_columns(pk: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token_enc, access_token_enc FROM accounts_kimiaccount WHERE id = %s", [pk])
        return cursor.fetchone()


def test_it_stores_the_token_encrypted_and_keeps_only_the_last_four() -> None:
    token = make_jwt()
    account, warnings = account_create(name="main", token=f'  "{token}"\n')

    refresh_col, access_col = raw_columns(account.pk)
    assert token not in refresh_col and token[-40:] not in refresh_col
    assert crypto.token_decrypt(refresh_col) == token  # quotes and whitespace were stripped
    assert access_col == ""
    assert (account.token_last4, account.masked_token, warnings) == (token[-4:], f"...{token[-4:]}", [])
    assert token not in repr(account) and token not in str(account)


def test_it_detects_the_protocol_and_applies_limits_and_defaults(settings) -> None:
    legacy, _ = account_create(name="old", token=make_jwt(protocol="legacy"), limit=5, window_hours=0.5)
    assert (legacy.protocol, legacy.turn_limit, legacy.window_seconds) == (Protocol.LEGACY, 5, 1800)
    connect, _ = account_create(name="new", token=make_jwt(protocol="connect"), max_concurrent=7)
    assert (connect.protocol, connect.max_concurrent) == (Protocol.CONNECT, 7)
    assert connect.turn_limit == settings.KIMIPROXY_DEFAULT_TURN_LIMIT
    assert connect.window_seconds == settings.KIMIPROXY_DEFAULT_WINDOW_HOURS * 3600
    forced, _ = account_create(name="forced", token=make_jwt(protocol="connect"), protocol="legacy")
    assert forced.protocol == Protocol.LEGACY


def test_it_stores_an_access_token_as_one_with_a_warning() -> None:
    exp = time.time() + 900
    token = make_jwt(typ="access", exp=exp)
    account, warnings = account_create(name="acc", token=token)
    refresh_col, access_col = raw_columns(account.pk)
    assert refresh_col == "" and crypto.token_decrypt(access_col) == token
    assert account.access_expires_at == datetime.fromtimestamp(int(exp), tz=UTC)
    assert len(warnings) == 1 and "cannot be renewed" in warnings[0]


def test_it_warns_about_tokens_that_are_not_jwts() -> None:
    _, warnings = account_create(name="opaque", token="x" * 40)
    assert any("not a JWT" in w for w in warnings)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "empty"),
        ('  ""  ', "empty"),
        ("abc def ghi jkl mno pqr stu", "whitespace"),
        ("short.tok", "too short"),
        ("é" * 30, "characters"),
    ],
)
def test_it_rejects_malformed_tokens_with_one_clear_message(token: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        account_create(name="bad", token=token)
    assert len(exc.value.messages) == 1 and message in exc.value.messages[0]
    assert not KimiAccount.objects.exists()


def test_it_rejects_a_duplicate_name_and_bad_limits() -> None:
    make_account(name="dup")
    with pytest.raises(ValidationError, match="already exists"):
        account_create(name="dup", token=make_jwt())
    with pytest.raises(ValidationError, match="at least 1 turn"):
        account_create(name="zero", token=make_jwt(), limit=0)
    with pytest.raises(ValidationError, match="at least one minute"):
        account_create(name="tiny", token=make_jwt(), window_hours=0.001)
    with pytest.raises(ValidationError, match="Unknown protocol"):
        account_create(name="proto", token=make_jwt(), protocol="grpc")
    assert KimiAccount.objects.count() == 1


def test_it_imports_lines_with_and_without_names_and_reports_errors() -> None:
    named, anonymous = make_jwt(), make_jwt()
    lines = ["# my accounts", "", f"alice,{named}", f"  {anonymous}  ", "bob,short", f"alice,{make_jwt()}"]

    result = accounts_import(lines=lines)

    assert [(i.line, i.ok) for i in result.lines] == [(3, True), (4, True), (5, False), (6, False)]
    assert result.created[1].name == f"kimi-{crypto.token_hash(anonymous)[:8]}"
    assert "too short" in result.errors[0].message and "already exists" in result.errors[1].message
    assert set(KimiAccount.objects.values_list("name", flat=True)) == {"alice", result.created[1].name}
    for item in result.lines:
        assert named not in item.message and anonymous not in item.message


def test_it_refuses_to_import_the_same_unnamed_token_twice() -> None:
    token = make_jwt()
    assert accounts_import(lines=[token]).created
    again = accounts_import(lines=[token])
    assert not again.created and "already exists" in again.errors[0].message


def test_it_disables_and_enables_an_account() -> None:
    account = make_account()
    account_disable(account=account)
    assert account.state == AccountState.DISABLED
    with pytest.raises(pool.NoAccountAvailable):
        pool.account_reserve()
    KimiAccount.objects.filter(pk=account.pk).update(cooldown_until=T0, backoff_level=3)
    account_enable(account=account)
    assert (account.state, account.cooldown_until, account.backoff_level) == (AccountState.ACTIVE, None, 0)
    assert pool.account_reserve().account_id == account.pk


def test_it_resets_the_usage_window() -> None:
    account = make_account(limit=2, window_hours=1)
    for minute in (0, 1):
        lease = pool.account_reserve(now=T0 + timedelta(minutes=minute))
        pool.lease_release(lease=lease, outcome="ok", now=T0 + timedelta(minutes=minute))
    in_flight = pool.account_reserve(now=T0 + timedelta(minutes=70))
    pool.lease_release(lease=in_flight, outcome="rate_limited", now=T0 + timedelta(minutes=70))
    account.refresh_from_db()
    assert account.state == AccountState.EXHAUSTED

    assert account_reset_window(account=account, now=T0 + timedelta(minutes=71)) == 1
    assert account.state == AccountState.ACTIVE and account.cooldown_until is None
    assert account_usage(account=account, now=T0 + timedelta(minutes=71)).used == 0


def test_it_replaces_a_token_and_revives_an_invalid_account() -> None:
    account = make_account(state=AccountState.INVALID)
    new = make_jwt(protocol="legacy")
    warnings = account_set_token(account=account, token=new)
    account.refresh_from_db()
    assert crypto.token_decrypt(raw_columns(account.pk)[0]) == new
    assert (account.state, account.token_last4) == (AccountState.ACTIVE, new[-4:])
    assert any("legacy" in w for w in warnings)


def test_it_creates_a_passthrough_account_once_and_keeps_its_stored_token() -> None:
    token = make_jwt(protocol="legacy")
    account = account_for_passthrough_token(token=token)
    digest = crypto.token_hash(token)
    assert (account.name, account.source, account.token_hash) == (
        f"pt-{digest[:12]}",
        AccountSource.PASSTHROUGH,
        digest,
    )
    assert account.protocol == Protocol.LEGACY
    assert token not in raw_columns(account.pk)[0]

    rotated = crypto.token_encrypt(make_jwt())  # as if the token module stored a rotated refresh token
    KimiAccount.objects.filter(pk=account.pk).update(refresh_token_enc=rotated)
    again = account_for_passthrough_token(token=f" {token} ")
    assert again.pk == account.pk and again.refresh_token_enc == rotated
    assert KimiAccount.objects.count() == 1
