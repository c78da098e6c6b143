"""Failover between accounts, exhausted pools, mid-stream faults and client disconnects."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from accounts.models import KimiAccount, Turn
from gateway.models import Conversation
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import client_for, pool_account

RETRYABLE = [
    ("access_expired", {}),  # refresh + retry on the same account works; counted as one attempt
    ("refresh_invalid", {}),
    ("forbidden_html", {}),  # a filter's 403 on the refresh: cooling, not invalid (C.11)
    ("rate_limited", {}),
    ("overloaded", {}),
    ("http_5xx", {}),
    ("http_429", {}),
    ("stream_busy", {}),
    ("empty_reply", {}),
    ("block_exception", {"after_events": 0}),
]


def two_accounts(e2e, protocol="connect", **limits):
    first = pool_account(e2e.fake, "first", protocol=protocol, **limits)
    second = pool_account(e2e.fake, "second", protocol=protocol, **limits)
    # "first" is picked first: least recently used wins ties.
    KimiAccount.objects.filter(pk=second.pk).update(last_used_at="2030-01-01T00:00:00Z")
    _, raw = make_api_key()
    return client_for(e2e.url, raw), first, second


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
@pytest.mark.parametrize(("fault", "options"), RETRYABLE, ids=[f for f, _ in RETRYABLE])
def test_it_fails_over_to_a_second_account(e2e, protocol, fault, options):
    client, first, second = two_accounts(e2e, protocol)
    e2e.fake.fault(fault, account="first", **options)
    e2e.fake.reply(text="served")

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=[{"role": "user", "content": "x"}])

    assert raw.parse().choices[0].message.content == "served"
    log = wait_for_final_log(raw.headers["x-request-id"])
    if fault == "access_expired":
        assert log.account_id == first.pk  # refreshed and retried on the same account
        return
    assert (log.account_id, log.attempts, log.outcome) == (second.pk, 2, "ok")
    wait_for_background_tasks()
    first.refresh_from_db()
    assert first.state in {"refresh_invalid": "invalid"}.get(fault, ("cooling", "exhausted"))
    if fault == "forbidden_html":
        # Cooled once, by the refresh's own policy (C.11); the lease release does not cool it again.
        assert (first.refresh_failures, first.backoff_level) == (1, 1)
    # A failed attempt that did no work upstream does not count against the limit; one whose partial
    # answer was retracted did cost a turn.
    counted = Turn.objects.filter(account=first).exclude(status="refunded").count()
    assert counted == (1 if fault == "block_exception" else 0)
    assert not Conversation.objects.exists() or all(c.state != "active" for c in Conversation.objects.all())


def test_it_answers_429_with_retry_after_when_every_account_is_exhausted(e2e):
    client, first, second = two_accounts(e2e, limit=1)
    client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "1"}])
    client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "2"}])

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "3"}])

    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) > 60
    log = wait_for_final_log(caught.value.response.headers["x-request-id"])
    assert (log.status_code, log.outcome, log.error_code) == (429, "rate_limited", "rate_limit_exceeded")


def test_it_answers_503_when_every_attempt_fails(e2e):
    client, first, second = two_accounts(e2e)
    e2e.fake.fault("http_5xx", times=None)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code in (502, 503)
    assert caught.value.body["type"] == "api_error"


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_it_ends_the_stream_with_an_error_chunk_after_a_mid_stream_cut(e2e, protocol):
    client, first, second = two_accounts(e2e, protocol)
    e2e.fake.reply(text="partial answer that will be cut", chunk_size=4)
    e2e.fake.fault("cut", after_events=8)

    response = httpx.post(
        f"{e2e.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "kimi", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=20,
    )

    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert '"error"' in lines[-2]
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.outcome == "upstream_error" and log.status_code >= 500
    wait_for_background_tasks()
    assert not Turn.objects.filter(status="in_flight").exists()


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_it_cleans_up_when_the_client_disconnects_mid_stream(e2e, protocol):
    client, first, second = two_accounts(e2e, protocol)
    e2e.fake.reply(text="x" * 400, chunk_size=4, delay=0.05)

    with httpx.stream(
        "POST",
        f"{e2e.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "kimi", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=20,
    ) as response:
        request_id = response.headers["x-request-id"]
        for _ in zip(range(3), response.iter_lines(), strict=False):
            pass
    # leaving the block closes the connection mid-stream

    log = wait_for_final_log(request_id)
    assert log.outcome == "client_closed"
    deadline = time.monotonic() + 5
    while not all(chat.deleted for chat in e2e.fake.chats.values()):
        assert time.monotonic() < deadline, "upstream chat not deleted after the client left"
        time.sleep(0.02)
    wait_for_background_tasks()
    assert not Turn.objects.filter(status="in_flight").exists()
    assert not Conversation.objects.exists()


def test_it_waits_for_a_busy_account_instead_of_refusing(e2e):
    import concurrent.futures

    pool_account(e2e.fake, "single", max_concurrent=1)
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    e2e.fake.reply(text="slow answer", chunk_size=2, delay=0.05)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(
            pool.map(
                lambda i: client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": str(i)}]),
                range(3),
            )
        )

    assert [a.choices[0].message.content for a in answers] == ["slow answer"] * 3
    wait_for_background_tasks()
    assert Turn.objects.filter(status="done").count() == 3


def test_it_refuses_at_once_when_the_queue_wait_runs_out(e2e, settings):
    import concurrent.futures

    settings.KIMIPROXY_QUEUE_TIMEOUT = 0.2
    pool_account(e2e.fake, "single", max_concurrent=1)
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    e2e.fake.reply(text="slow answer", chunk_size=1, delay=0.1)

    def ask(i: int) -> int:
        try:
            client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": str(i)}])
            return 200
        except openai.RateLimitError:
            return 429

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(ask, range(2)))
    assert statuses == [200, 429]
