"""No secret leaves the gateway: not in logs (every logger at DEBUG, httpx/httpcore included), not in
error responses, not in the admin's HTML.

Secrets are every refresh token, access token and gateway key involved: pool accounts, pass-through
tokens, tokens rotated by a refresh, and the key. A leak is the full value or any 16-character piece of
it (the JWT header segment is left out: it is the same public ``{"alg":...}`` for every token).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import KimiAccount
from gateway.models import ApiKey, Conversation, RequestLog
from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account

pytestmark = pytest.mark.filterwarnings("ignore:No directory at:UserWarning")  # whitenoise: no collectstatic
WINDOW = 16
LOGGERS = ("", "httpx", "httpcore", "django", "django.request", "uvicorn", "uvicorn.error", "gateway", "accounts")


def fragments(secret: str) -> set[str]:
    body = secret.split(".", 1)[1] if secret.startswith("eyJ") and secret.count(".") == 2 else secret
    return {body[i : i + WINDOW] for i in range(len(body) - WINDOW + 1)}


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (shortened for the failure message) a piece of text reveals."""
    found = []
    for secret in secrets:
        if secret in text or any(piece in text for piece in fragments(secret)):
            found.append(f"{secret[:8]}...({len(secret)} chars)")
    return found


class Traffic:
    """Requests against the live gateway; collects every response and every secret seen."""

    def __init__(self, e2e) -> None:  # type: ignore[no-untyped-def]
        self.e2e = e2e
        self.secrets: set[str] = set()
        self.responses: list[str] = []

    def remember(self, *names: str) -> None:
        for name in names:
            account = self.e2e.fake.account(name)
            self.secrets |= {account.refresh_token, account.access_token}

    def post(self, bearer: str, *, stream: bool = False) -> httpx.Response:
        body = {"model": "kimi", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {bearer}"}
        response = httpx.post(f"{self.e2e.url}/v1/chat/completions", json=body, headers=headers, timeout=20)
        self.responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response


@pytest.fixture
def debug_logs(caplog):  # type: ignore[no-untyped-def]
    for name in LOGGERS:  # settings raise httpx/httpcore to WARNING; force DEBUG to prove they are safe anyway
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def run_every_kind_of_request(e2e) -> Traffic:  # type: ignore[no-untyped-def]
    fake, traffic = e2e.fake, Traffic(e2e)
    pool_account(fake, "pool-a")
    _, key = make_api_key(name="secret-test")
    traffic.secrets.add(key)
    traffic.remember("pool-a")

    assert traffic.post(key).status_code == 200
    assert traffic.post(key, stream=True).status_code == 200
    traffic.remember("pool-a")
    fake.expire_access("pool-a")  # the next turn gets 401 and refreshes, which rotates the refresh token
    assert traffic.post(key).status_code == 200
    traffic.remember("pool-a")
    assert fake.count("refresh", account="pool-a") >= 2

    for protocol in ("connect", "legacy"):  # pass-through: the bearer is the Kimi refresh token itself
        minted = fake.mint_account(f"pt-{protocol}", protocol=protocol)
        traffic.secrets.add(minted.refresh_token)
        assert traffic.post(minted.refresh_token).status_code == 200
        traffic.remember(f"pt-{protocol}")

    revoked = fake.mint_account("pt-revoked")
    traffic.secrets.add(revoked.refresh_token)
    fake.revoke_refresh("pt-revoked")
    assert traffic.post(revoked.refresh_token).status_code >= 400  # auth failure upstream
    assert traffic.post(key[:-4] + "AAAA").status_code == 401  # a wrong gateway key, close to the real one

    fake.fault("http_5xx", status=502, times=None)
    assert traffic.post(key).status_code >= 500  # upstream error response
    assert traffic.post(key, stream=True).status_code >= 400  # 429: the only account is now cooling
    return traffic


def admin_pages() -> str:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-not-secret")
    client = Client()
    client.force_login(user)
    urls = [reverse(f"admin:{name}_changelist") for name in ADMIN_MODELS]
    urls += [
        reverse("admin:accounts_kimiaccount_change", args=[pk])
        for pk in KimiAccount.objects.values_list("pk", flat=True)
    ]
    urls += [reverse("admin:gateway_apikey_change", args=[pk]) for pk in ApiKey.objects.values_list("pk", flat=True)]
    urls += [
        reverse("admin:gateway_requestlog_change", args=[pk]) for pk in RequestLog.objects.values_list("pk", flat=True)
    ]
    urls += [
        reverse("admin:gateway_conversation_change", args=[pk])
        for pk in Conversation.objects.values_list("pk", flat=True)
    ]
    pages = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages.append(response.content.decode())
    return "\n".join(pages)


ADMIN_MODELS = ("accounts_kimiaccount", "gateway_apikey", "gateway_requestlog", "gateway_conversation")


def test_it_never_reveals_a_token_or_key(e2e, debug_logs):
    traffic = run_every_kind_of_request(e2e)
    from tests.fixtures_gateway import wait_for_background_tasks

    wait_for_background_tasks()
    log_text = debug_logs.text + "\n".join(r.getMessage() for r in debug_logs.records)

    assert len(traffic.secrets) >= 10  # the scenario really produced distinct secrets, rotations included
    assert any(r.name.startswith("httpcore") for r in debug_logs.records)  # DEBUG capture really was on
    assert leaks(log_text, traffic.secrets) == []
    assert leaks("\n".join(traffic.responses), traffic.secrets) == []
    assert leaks(admin_pages(), traffic.secrets) == []


def test_it_detects_a_leak_when_there_is_one(e2e):
    """The detector itself: a full token, and a 16-character piece of one, are both found."""
    token = e2e.fake.mint_account("probe").refresh_token
    body = token.split(".", 1)[1]
    assert leaks(f"x {token} y", [token]) and leaks(f"x {body[20:36]} y", [token])
    assert leaks(f"x {body[20:35]} y", [token]) == []
