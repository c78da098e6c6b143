"""Helpers for the upstream-client integration tests (accounts from fake accounts, running turns)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from accounts.crypto import token_encrypt
from accounts.models import KimiAccount
from gateway.kimi.base import KimiError, KimiEvent, TextDelta, ThinkingDelta, TurnRequest
from gateway.kimi.fake import FakeAccount
from gateway.kimi.transport.aio import AioUpstream


def account_for(fake_account: FakeAccount, **fields: Any) -> KimiAccount:
    """A pool account holding the fake account's refresh token (as the account services would store it)."""
    token = fake_account.refresh_token
    values = {"refresh_token_enc": token_encrypt(token), "token_last4": token[-4:]} | fields
    return KimiAccount.objects.create(name=fake_account.name, protocol=fake_account.protocol, **values)


aaccount_for = sync_to_async(account_for)


@pytest.fixture(params=["aiohttp", "httpx"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The upstream transport the clients run on: the default (aiohttp) and KIMIPROXY_UPSTREAM_CLIENT=httpx."""
    client: Any = AioUpstream(max_connections=100) if request.param == "aiohttp" else httpx.AsyncClient()
    try:
        yield client
    finally:
        await client.aclose()


async def run_turn(session: Any, request: TurnRequest) -> tuple[list[KimiEvent], KimiError | None]:
    """Every event of one turn, and the error that ended it (None on success)."""
    events: list[KimiEvent] = []
    try:
        async with session.turn(request) as stream:
            async for event in stream:
                events.append(event)
    except KimiError as exc:
        return events, exc
    return events, None


def text_of(events: list[KimiEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def thinking_of(events: list[KimiEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ThinkingDelta))


@pytest.fixture(autouse=True)
async def close_worker_connections() -> AsyncIterator[None]:
    """Close the database connection ``sync_to_async`` opened in its worker thread: pytest-django only
    closes the main thread's, and on PostgreSQL a leftover session blocks dropping the test database.
    Import this fixture into each test module that runs the clients."""
    yield
    await sync_to_async(connections.close_all)()
