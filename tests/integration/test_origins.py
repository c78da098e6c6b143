"""Two deployments (kimi-web-protocol.md C.5): every call of an account goes to the deployment that
issued its token, which the fake records per call (``Call.deployment``, one port each)."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounts.services import account_create
from gateway.kimi import session_for
from gateway.kimi.base import ChatCreated, FileBlob, TurnRequest
from gateway.kimi.fake import FakeKimi
from gateway.kimi.probes import account_probe
from tests.integration.kimi_client_helpers import close_worker_connections, http, run_turn

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest
# The calls a turn with a file, a delete and a check make (the legacy storage PUT carries no account).
KINDS = {
    "connect": {"refresh", "upload", "parse", "chat", "delete", "user", "plan"},
    "legacy": {"refresh", "presign", "file", "create_chat", "stream", "delete", "user"},
}


@pytest.mark.parametrize(
    ("protocol", "deployment"), [("connect", "kimi.ai"), ("connect", "kimi.com"), ("legacy", "kimi.com")]
)
async def test_every_call_of_an_account_reaches_its_own_deployment(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, deployment: str
) -> None:
    fake_kimi.configure(strict_deployments=True)  # the other deployment refuses the account's tokens
    minted = fake_kimi.mint_account("alice", protocol=protocol, deployment=deployment)
    account, _ = await sync_to_async(account_create)(name="alice", token=minted.refresh_token)
    assert (account.protocol, account.origin) == (protocol, deployment)  # derived from the token's aud
    session = session_for(account, http=http)

    ref = await session.upload(FileBlob("report.txt", "text/plain", b"quarterly numbers"))
    events, error = await run_turn(session, TurnRequest(text="hello", files=(ref,)))
    assert error is None
    await session.delete_chat(next(e.chat_id for e in events if isinstance(e, ChatCreated)))
    assert (await account_probe(account_id=account.pk, http=http)).live

    calls = fake_kimi.calls
    assert {(c.deployment, c.status) for c in calls} == {(deployment, 200)}
    assert {c.kind for c in calls if c.account == "alice"} >= KINDS[protocol]


async def test_the_fake_refuses_a_token_at_the_other_deployment_when_strict(fake_kimi: FakeKimi) -> None:
    fake_kimi.configure(strict_deployments=True)
    token = fake_kimi.mint_account("alice", deployment="kimi.ai").refresh_token
    path = "/api/account.gateway.v1.AuthService/RefreshToken"
    async with httpx.AsyncClient() as client:
        wrong = await client.post(fake_kimi.url + path, json={"refresh_token": token})
        right = await client.post(fake_kimi.url_ai + path, json={"refresh_token": token})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthenticated")
    assert right.status_code == 200
    assert [(c.deployment, c.status) for c in fake_kimi.calls] == [("kimi.com", 401), ("kimi.ai", 200)]
