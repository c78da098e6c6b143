"""Per-key turn budgets (ApiKey.turns_per_day): beyond it a key gets 429 ``insufficient_quota`` with a
``Retry-After`` for when its oldest counted turn leaves the rolling 24 hours, while another key is
served; refunded turns do not count."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts.choices import TurnStatus
from accounts.models import Turn
from gateway.models import ApiKey, RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import pool_account

BODY = {"model": "kimi", "messages": [{"role": "user", "content": "hi"}]}


def post(e2e, raw: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{e2e.url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {raw}"}, timeout=20
    )


def served(e2e, raw: str) -> RequestLog:  # type: ignore[no-untyped-def]
    response = post(e2e, raw)
    assert response.status_code == 200, response.text
    return wait_for_final_log(response.headers["x-request-id"])


def test_a_key_over_its_daily_budget_gets_429_while_another_key_is_served(e2e) -> None:  # type: ignore[no-untyped-def]
    pool_account(e2e.fake, "first")
    pool_account(e2e.fake, "second")
    _, budgeted = make_api_key(name="agent")
    _, other = make_api_key(name="other")
    ApiKey.objects.filter(name="agent").update(turns_per_day=3)

    oldest = served(e2e, budgeted)
    # The next request's first attempt fails before any byte: refunded, failed over, one turn counted.
    e2e.fake.fault("http_5xx")  # once, on whichever account is picked
    retried = served(e2e, budgeted)
    assert retried.attempts == 2
    assert Turn.objects.filter(request_id=retried.request_id, status=TurnStatus.REFUNDED).count() == 1
    served(e2e, budgeted)  # the third counted turn: a refunded one would have made this one refused

    refused = post(e2e, budgeted)

    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    first_turn = Turn.objects.filter(request_id=oldest.request_id).get()
    expected = (first_turn.started_at + timedelta(hours=24) - timezone.now()).total_seconds()
    assert abs(int(refused.headers["Retry-After"]) - expected) <= 5
    log = RequestLog.objects.get(request_id=refused.headers["x-request-id"])
    assert (log.status_code, log.error_code, log.account_id) == (429, "insufficient_quota", None)
    assert not Turn.objects.filter(request_id=log.request_id).exists()  # the refusal reserved no account

    served(e2e, other)  # the pool still serves everyone else

    # Once its oldest turn has left the rolling day, the key is served again.
    Turn.objects.filter(pk=first_turn.pk).update(started_at=timezone.now() - timedelta(hours=24, seconds=1))
    served(e2e, budgeted)


@pytest.mark.django_db
def test_the_one_statement_accept_leaves_a_budgeted_key_to_the_orm_path() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement accept is PostgreSQL's")
    from gateway.db.accept_sql import api_key_accept
    from gateway.records.keys import api_key_hash_of
    from gateway.records.logs import LogStart

    key, raw = make_api_key(name="agent")
    key.turns_per_day = 5
    key.save(update_fields=["turns_per_day"])
    key_hash = api_key_hash_of(raw=raw)
    assert key_hash is not None

    fast = api_key_accept(
        key_hash=key_hash, start=LogStart(request_id="r1", path="/v1/x"), model="kimi", now=timezone.now()
    )

    assert fast is not None and fast.key is not None and fast.key.turns_per_day == 5
    assert fast.log_id is None and not RequestLog.objects.exists()
