"""Graceful shutdown: SIGTERM to a real gateway process (uvicorn, default lifespan) with a stream in flight.

The stream must finish, its log row must be final and its upstream chat deleted before the process
exits (kimiproxy/asgi.py drains the tracked background tasks in the lifespan shutdown), and the gateway
must stop being ready at once.
"""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from gateway.models import Conversation, RequestLog
from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account
from tests.integration.gateway_processes import (
    PYTHON,
    ServerProcess,
    database_url_of_tests,
    gateway_env,
    running,
    start_gateway,
    wait_until,
)

pytestmark = pytest.mark.slow
ANSWER = "The quick brown fox jumps over the lazy dog, slowly, word by word."


def not_ready(url: str) -> bool:
    """True when the gateway refuses new connections or answers /readyz with 503."""
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 503
    except httpx.TransportError:
        return True


def deltas(lines: list[str]) -> str:
    text = ""
    for line in lines:
        if line.startswith("data: {"):
            choices = json.loads(line[6:])["choices"]
            text += "".join(c["delta"].get("content") or "" for c in choices)
    return text


def slow_deletes(fake_kimi, monkeypatch, seconds: float) -> None:
    """The upstream takes ``seconds`` to delete a chat: the delete outlives the HTTP response, so only
    the lifespan drain keeps the process alive long enough for it."""
    delete = fake_kimi.state.delete_chat

    def slow(chat_id: str, account: str) -> bool:
        time.sleep(seconds)
        return delete(chat_id, account)

    monkeypatch.setattr(fake_kimi.state, "delete_chat", slow)


def start(server: str, env: dict[str, str]) -> ServerProcess:
    if server == "uvicorn":
        return start_gateway(env)
    # docker/gunicorn.conf.py as production uses it, one worker, on the socket we bound.
    env = {**env, "GUNICORN_BIND": "fd://{fd}", "GUNICORN_WORKERS": "1", "GUNICORN_GRACEFUL_TIMEOUT": "20"}
    argv = [PYTHON, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "kimiproxy.asgi:application"]
    return ServerProcess(argv, env=env, name="gunicorn")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_it_finishes_the_in_flight_stream_and_deletes_its_chat_on_sigterm(
    server, fake_kimi, transactional_db, monkeypatch
):
    pool_account(fake_kimi, "slow-one")
    slow_deletes(fake_kimi, monkeypatch, 1.0)
    _, key = make_api_key()
    fake_kimi.reply(text=ANSWER, chunk_size=4, delay=0.1)  # ~17 frames, ~1.7 s: still streaming at SIGTERM
    env = gateway_env(database_url=database_url_of_tests(), kimi_url=fake_kimi.url, KIMIPROXY_SHUTDOWN_GRACE="15")
    gateway = start(server, env)
    with running(gateway):
        gateway.wait_ready()
        body = {"model": "kimi", "stream": True, "messages": [{"role": "user", "content": "tell me slowly"}]}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            received = [next(lines)]  # the first chunk: the stream is in flight
            gateway.signal(signal.SIGTERM)
            wait_until(lambda: not_ready(gateway.url), timeout=5, what="readiness to drop after SIGTERM")
            received += list(lines)
        request_id = r.headers["x-request-id"]
        assert gateway.wait_exit(timeout=20) in (0, -signal.SIGTERM), gateway.output()

    assert deltas(received) == ANSWER
    assert "data: [DONE]" in received
    # Written by the exiting process before it exited: nothing waits on a later sweep.
    log = RequestLog.objects.get(request_id=request_id)
    assert (log.status_code, log.outcome) == (200, "ok")
    chats = list(fake_kimi.chats.values())
    assert len(chats) == 1 and chats[0].deleted
    assert not Conversation.objects.exists()
