"""The DB-backed token source: cache, rotation, single-flight refresh, invalid accounts (doc 1.4, 2.4, 2.5)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.choices import AccountState
from accounts.crypto import token_decrypt, token_encrypt
from accounts.jwt_claims import jwt_expiry
from accounts.models import KimiAccount
from gateway.kimi import session_for
from gateway.kimi.base import AuthError, Done, RefreshRefused, TurnRequest
from gateway.kimi.fake import FakeKimi
from gateway.kimi.probes import account_probe
from gateway.kimi.transport.http import upstream_client_close
from tests.integration.kimi_client_helpers import aaccount_for, close_worker_connections, http, run_turn

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest


async def reload(account: KimiAccount) -> KimiAccount:
    return await KimiAccount.objects.aget(pk=account.pk)


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_it_refreshes_once_and_persists_the_rotated_tokens(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str
) -> None:
    minted = fake_kimi.mint_account("alice", protocol=protocol)
    account = await aaccount_for(minted)
    session = session_for(account, http=http)
    for text in ("one", "two"):
        events, error = await run_turn(session, TurnRequest(text=text))
        assert error is None and isinstance(events[-1], Done)
    assert fake_kimi.count("refresh") == 1
    stored = await reload(account)
    newest = fake_kimi.account("alice")
    assert newest.refresh_token != minted.refresh_token
    assert token_decrypt(stored.refresh_token_enc) == newest.refresh_token
    assert stored.token_last4 == newest.refresh_token[-4:]
    assert token_decrypt(stored.access_token_enc) == newest.access_token
    assert stored.access_expires_at == jwt_expiry(newest.access_token)
    assert stored.refreshing_until is None
    assert newest.access_token not in stored.access_token_enc  # stored encrypted


async def test_it_refreshes_when_the_cached_token_is_about_to_expire(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, settings: Any
) -> None:
    account = await aaccount_for(fake_kimi.mint_account("alice"))
    session = session_for(account, http=http)
    await run_turn(session, TurnRequest(text="one"))
    settings.KIMIPROXY_TOKEN_REFRESH_MARGIN = 10_000  # the 900 s token is now "about to expire"
    await run_turn(session, TurnRequest(text="two"))
    assert fake_kimi.count("refresh") == 2


async def test_it_refreshes_once_for_concurrent_requests(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    account = await aaccount_for(fake_kimi.mint_account("alice"))
    sessions = [session_for(account, http=http) for _ in range(5)]
    tokens = await asyncio.gather(*(s.tokens.access_token() for s in sessions))
    assert len(set(tokens)) == 1
    assert fake_kimi.count("refresh") == 1


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_it_marks_the_account_invalid_when_refresh_says_the_token_is_dead(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str
) -> None:
    # C.11: Connect 401 `unauthenticated`, legacy `auth.token.invalid`: invalid at the first answer.
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    fake_kimi.fault("refresh_invalid")
    events, error = await run_turn(session_for(account, http=http), TurnRequest(text="hello"))
    assert isinstance(error, AuthError) and events == []
    stored = await reload(account)
    assert stored.state == AccountState.INVALID
    assert stored.last_error_code == "auth" and stored.last_error_at is not None
    assert "rejected" in stored.last_error_message
    assert fake_kimi.count("chat") + fake_kimi.count("create_chat") == 0


@pytest.mark.parametrize(
    ("protocol", "fault", "variant"),
    [
        ("connect", "refresh_invalid", "403"),  # 403 permission_denied: not the dead-token code
        ("legacy", "refresh_invalid", "400"),  # the risk-control 400 of doc 1.4.2
        ("connect", "forbidden_html", None),  # a filter's HTML page
        ("legacy", "forbidden_html", None),
        ("connect", "http_5xx", None),
    ],
)
async def test_it_cools_the_account_down_when_refresh_is_refused_otherwise(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, fault: str, variant: str | None
) -> None:
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    fake_kimi.fault(fault, variant=variant, on=["refresh"])
    events, error = await run_turn(session_for(account, http=http), TurnRequest(text="hello"))
    assert isinstance(error, RefreshRefused) and error.retryable and events == []
    stored = await reload(account)
    assert stored.state == AccountState.COOLING and stored.cooldown_until is not None
    assert (stored.refresh_failures, stored.last_error_code) == (1, "refresh_refused")
    assert stored.refreshing_until is None
    assert fake_kimi.count("chat") + fake_kimi.count("create_chat") == 0


async def test_it_refuses_a_token_minted_for_another_account(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    alice, bob = fake_kimi.mint_account("alice"), fake_kimi.mint_account("bob")
    header, payload, signature = alice.refresh_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = bob.user_id  # alice's signature over bob's identity
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = f"{header}.{forged_payload}.{signature}"
    account = await sync_to_async(KimiAccount.objects.create)(
        name="bob", protocol="connect", refresh_token_enc=token_encrypt(forged), token_last4=forged[-4:]
    )
    assert await session_for(account, http=http).check() is False
    assert (await reload(account)).state == AccountState.INVALID


async def test_it_uses_an_access_only_account_until_it_expires(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    minted = fake_kimi.mint_account("alice")
    account = await sync_to_async(KimiAccount.objects.create)(
        name="alice",
        protocol="connect",
        access_token_enc=token_encrypt(minted.access_token),
        access_expires_at=jwt_expiry(minted.access_token),
    )
    session = session_for(account, http=http)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert error is None and isinstance(events[-1], Done)
    await KimiAccount.objects.filter(pk=account.pk).aupdate(access_expires_at=timezone.now() - timedelta(seconds=1))
    _, error = await run_turn(session, TurnRequest(text="again"))
    assert isinstance(error, AuthError)
    assert fake_kimi.count("refresh") == 0
    assert (await reload(account)).state == AccountState.INVALID


async def test_account_probe_reports_live_and_dead_accounts(fake_kimi: FakeKimi) -> None:
    live = await aaccount_for(fake_kimi.mint_account("alice"))
    dead = await aaccount_for(fake_kimi.mint_account("bob", protocol="legacy"))
    fake_kimi.revoke_refresh("bob")
    try:
        assert (await account_probe(account_id=live.pk)).live
        assert (await account_probe(account_id=live.pk)).live  # "check now" refreshes every time
        assert (await account_probe(account_id=dead.pk)).verdict == "invalid"
    finally:
        await upstream_client_close()  # account_probe uses the process's shared client
    assert fake_kimi.count("refresh", "alice") == 2
    assert (await reload(dead)).state == AccountState.INVALID
