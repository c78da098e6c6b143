"""Upstream faults and awkward clients never leave anything behind.

After every scenario: each request has a final log row, no turn is still in flight, no conversation is
left ``active``, every upstream chat the fake created is deleted or recorded for cleanup, and every
account that is not invalid can be reserved again once its cooldown (if any) has passed. A lease held
by a process that died is reclaimed after its timeout.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from accounts import pool
from accounts.choices import AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from gateway.choices import ConversationState
from gateway.models import Conversation, RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account
from tests.integration.gateway_processes import database_url_of_tests, gateway_env, running, start_gateway

ANSWER = "A long enough answer to be cut, stalled and read slowly, in many small pieces."
# fault -> the final status the log must show (proves the fault really fired)
FAULTS = {
    "refresh failure": ({"kind": "refresh_invalid", "times": None}, 502),
    "5xx burst": ({"kind": "http_5xx", "status": 502, "times": 3}, 502),
    "rate limited": ({"kind": "rate_limited", "retry_after": 30, "times": None}, 429),
    "overloaded mid-answer": ({"kind": "overloaded", "after_events": 3, "times": None}, 503),
    "cut mid-stream": ({"kind": "cut", "after_events": 4, "times": None}, 502),
    "cut once, then served": ({"kind": "cut", "after_events": 4, "times": 1}, 200),
    "heartbeats only, past no-progress": ({"kind": "stall", "interval": 0.05, "duration": 2.0, "times": None}, 504),
    "silence past idle": ({"kind": "silence", "after_events": 3, "duration": 2.0, "times": None}, 504),
}


@pytest.fixture
def gateway(e2e, settings):  # type: ignore[no-untyped-def]
    settings.KIMIPROXY_IDLE_TIMEOUT = 0.3
    settings.KIMIPROXY_NO_PROGRESS_TIMEOUT = 0.5
    settings.KIMIPROXY_KEEPALIVE_SECONDS = 0.1
    for name in ("acct-a", "acct-b"):
        pool_account(e2e.fake, name)
    _, key = make_api_key()
    e2e.key = key
    e2e.fake.reply(text=ANSWER, chunk_size=4)
    return e2e


def post(gateway, *, stream: bool) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Send one chat; returns status, the whole body as read, and the request id."""
    body = {"model": "kimi", "stream": stream, "messages": [{"role": "user", "content": "go"}]}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
        return r.status_code, r.read().decode(), r.headers["x-request-id"]


def assert_nothing_left_behind(fake: Any) -> None:
    wait_for_background_tasks()
    assert not RequestLog.objects.filter(outcome="pending").exists()
    assert not Turn.objects.filter(status=TurnStatus.IN_FLIGHT).exists()
    assert not Conversation.objects.filter(state=ConversationState.ACTIVE).exists()
    recorded = set(Conversation.objects.values_list("chat_id", flat=True))
    assert all(chat.deleted or chat.id in recorded for chat in fake.chats.values())
    for account in KimiAccount.objects.exclude(state=AccountState.INVALID):
        later = max(timezone.now(), account.cooldown_until or timezone.now()) + timedelta(seconds=1)
        lease = pool.account_reserve(account_ids=[account.pk], now=later)  # not stuck: it serves again
        pool.lease_release(lease=lease, outcome="client_closed", refund=True, now=later)


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "stream"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_it_leaves_nothing_behind_after_an_upstream_fault(gateway, fault, stream):
    options, final_status = FAULTS[fault]
    gateway.fake.fault(**options)

    status, body, request_id = post(gateway, stream=stream)

    log = wait_for_final_log(request_id)
    assert log.status_code == final_status
    assert status == final_status or (stream and status == 200)  # a started stream reports errors in-band
    if status == 200 and stream:
        assert body.rstrip().endswith("data: [DONE]")
    if status >= 400:
        assert json.loads(body)["error"]["message"]
    assert_nothing_left_behind(gateway.fake)


def test_it_serves_a_client_that_reads_slowly(gateway):
    gateway.fake.reply(text=ANSWER * 3, chunk_size=2, times=1)
    body = {"model": "kimi", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    received = b""
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
        for chunk in r.iter_raw(64):
            received += chunk
            time.sleep(0.005)
    text = "".join(
        (json.loads(line[6:])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for line in received.decode().splitlines()
        if line.startswith("data: {")
    )
    assert text == ANSWER * 3
    assert wait_for_final_log(r.headers["x-request-id"]).outcome == "ok"
    assert_nothing_left_behind(gateway.fake)


def test_it_settles_a_client_that_walks_away_mid_stream(gateway):
    gateway.fake.reply(text=ANSWER * 3, chunk_size=2, delay=0.02, times=1)
    body = {"model": "kimi", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
        next(r.iter_raw())
        request_id = r.headers["x-request-id"]
    log = wait_for_final_log(request_id)
    assert (log.status_code, log.outcome) == (499, "client_closed")
    assert_nothing_left_behind(gateway.fake)


@pytest.mark.slow
def test_it_reclaims_the_lease_of_a_process_that_died(fake_kimi, transactional_db):
    account = pool_account(fake_kimi, "lonely", max_concurrent=1)
    _, key = make_api_key()
    fake_kimi.reply(text=ANSWER, chunk_size=2, delay=0.2)
    gateway = start_gateway(gateway_env(database_url=database_url_of_tests(), kimi_url=fake_kimi.url))
    with running(gateway):
        gateway.wait_ready()
        body = {"model": "kimi", "stream": True, "messages": [{"role": "user", "content": "go"}]}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
            next(r.iter_raw())
            gateway.signal(signal.SIGKILL)  # dies mid-stream: nothing gets to release its lease
            gateway.wait_exit(timeout=10)

    turn = Turn.objects.get(account=account)
    assert turn.status == TurnStatus.IN_FLIGHT
    with pytest.raises(pool.NoAccountAvailable):  # before the timeout the account is still busy
        pool.account_reserve(account_ids=[account.pk], now=turn.lease_expires_at - timedelta(seconds=1))
    after = turn.lease_expires_at + timedelta(seconds=1)

    assert pool.lease_reclaim_stale(now=after) == 1

    turn.refresh_from_db()
    assert (turn.status, turn.outcome) == (TurnStatus.DONE, "lease_expired")
    lease = pool.account_reserve(account_ids=[account.pk], now=after)
    assert lease.account_id == account.pk
