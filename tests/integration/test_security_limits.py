"""Request limits, against two real gateway processes sharing one database (as replicas would).

Body size (413), messages / parts / files (400), and per-key requests-per-minute and concurrent-stream
limits (429 with Retry-After) that hold across both processes, not per process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accounts.models import Turn
from gateway.models import Conversation, RequestLog
from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account
from tests.integration.gateway_processes import (
    ServerProcess,
    database_url_of_tests,
    gateway_env,
    start_gateway,
    wait_until,
)

pytestmark = pytest.mark.slow
LIMITS = {
    "KIMIPROXY_MAX_BODY_BYTES": "20000",
    "KIMIPROXY_MAX_MESSAGES": "5",
    "KIMIPROXY_MAX_PARTS": "4",
    "KIMIPROXY_MAX_FILES": "2",
}
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def replicas(django_db_setup: None, fake_kimi_server: Any) -> Iterator[list[ServerProcess]]:
    env = gateway_env(database_url=database_url_of_tests(), kimi_url=fake_kimi_server.url, **LIMITS)
    processes = [start_gateway(env, name=f"replica-{i}") for i in range(2)]
    try:
        for process in processes:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def api(replicas, fake_kimi, transactional_db) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    pool_account(fake_kimi, "only", max_concurrent=10)

    class Api:
        urls = [r.url for r in replicas]
        fake = fake_kimi

        @staticmethod
        def post(key: str, body: Any, *, replica: int = 0, **kwargs: Any) -> httpx.Response:
            return httpx.post(
                f"{replicas[replica].url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                timeout=20,
                **({"json": body} if "content" not in kwargs else {}),
                **kwargs,
            )

    yield Api()
    # The replicas finish each request in the background (final write, then the chat delete): let that
    # land before the test database is flushed, or the flush and their last writes can deadlock.
    wait_until(_replicas_settled, timeout=15, what="the replicas' background work")


def _replicas_settled() -> bool:
    pending = RequestLog.objects.filter(outcome="pending").exists()
    return not pending and not Conversation.objects.exists() and not Turn.objects.filter(status="in_flight").exists()


def chat(*messages: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "kimi", "messages": list(messages) or [{"role": "user", "content": "hi"}], **extra}


def assert_error(response: httpx.Response, status: int, *, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    if param is not None:
        assert error["param"] == param
    return error


def test_it_answers_413_json_for_a_body_over_the_limit(api):
    _, key = make_api_key()
    big = chat({"role": "user", "content": "x" * 30000})
    assert_error(api.post(key, big), 413)
    assert api.post(key, chat({"role": "user", "content": "x" * 10000})).status_code == 200  # under: served


def test_it_answers_413_for_a_chunked_body_over_the_limit(api):
    """No Content-Length to trust: the limit must hold for what is actually read."""
    _, key = make_api_key()
    payload = json.dumps(chat({"role": "user", "content": "x" * 30000})).encode()
    chunks = iter([payload[i : i + 4096] for i in range(0, len(payload), 4096)])
    assert_error(api.post(key, None, content=chunks), 413)


def test_it_refuses_too_many_messages_parts_and_files(api):
    _, key = make_api_key()
    many = [{"role": "user", "content": f"m{i}"} for i in range(6)]
    parts = [{"type": "text", "text": f"p{i}"} for i in range(5)]
    files = [{"type": "text", "text": "look"}] + [{"type": "image_url", "image_url": {"url": PIXEL}}] * 3

    assert_error(api.post(key, chat(*many)), 400, param="messages")
    assert "messages[0].content" in assert_error(api.post(key, chat({"role": "user", "content": parts})), 400)["param"]
    assert "messages" in assert_error(api.post(key, chat({"role": "user", "content": files})), 400)["param"]
    assert api.fake.count("chat") == 0


def test_it_applies_the_rpm_limit_across_replicas(api):
    _, key = make_api_key(rpm=4)
    statuses, retry_after = [], []
    for i in range(6):
        response = api.post(key, chat(), replica=i % 2)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert_error(response, 429)
            retry_after.append(int(response.headers["Retry-After"]))

    assert statuses == [200, 200, 200, 200, 429, 429]  # four for the key in all, not four per process
    assert all(1 <= seconds <= 60 for seconds in retry_after)


def test_it_applies_the_concurrent_stream_limit_across_replicas(api):
    _, key = make_api_key(max_concurrent=2)
    api.fake.reply(text="slow " * 12, chunk_size=5, delay=0.1)
    headers = {"Authorization": f"Bearer {key}"}
    body = chat(stream=True)
    with (
        httpx.Client(timeout=20, headers=headers) as first,
        httpx.Client(timeout=20, headers=headers) as second,
        first.stream("POST", f"{api.urls[0]}/v1/chat/completions", json=body) as one,
        second.stream("POST", f"{api.urls[1]}/v1/chat/completions", json=body) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        refused = api.post(key, chat(), replica=0)
        error = assert_error(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1 and "concurrent" in error["message"].lower()
        assert "[DONE]" in one.read().decode() and "[DONE]" in two.read().decode()

    wait_until(lambda: not RequestLog.objects.filter(outcome="pending").exists(), timeout=10, what="final log rows")
    assert api.post(key, chat(), replica=1).status_code == 200  # the slots are free again
