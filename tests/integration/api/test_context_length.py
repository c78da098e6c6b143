"""Prompts too long for the web chat (protocol doc C.2, C.9): the earlier history goes up as an
attached .txt file (up front above KIMIPROXY_PROMPT_ATTACH_BYTES, or once after Kimi refused the prompt
as too long, on the same account), and a prompt refused that way too is a 400 context_length_exceeded:
no failover, no cooldown, the turn refunded."""

from __future__ import annotations

import json

import httpx
import pytest

from accounts.models import KimiAccount, Turn
from gateway.chat.prompt import HISTORY_FILE, HISTORY_NOTE
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account

HISTORY = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question about apples"},
    {"role": "assistant", "content": "first answer about apples"},
    {"role": "user", "content": "the latest question about pears"},
]


@pytest.fixture
def two(e2e):
    def setup(protocol: str):
        first = pool_account(e2e.fake, "first", protocol=protocol)
        second = pool_account(e2e.fake, "second", protocol=protocol)
        KimiAccount.objects.filter(pk=second.pk).update(last_used_at="2030-01-01T00:00:00Z")
        _, raw = make_api_key()
        return first, second, raw

    return setup


def ask(e2e, raw: str, *, stream: bool = False, messages=HISTORY) -> httpx.Response:
    return httpx.post(
        f"{e2e.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {raw}"},
        json={"model": "kimi", "messages": messages, "stream": stream},
        timeout=20,
    )


def answer_text(response: httpx.Response) -> str:
    if not response.headers["content-type"].startswith("text/event-stream"):
        return response.json()["choices"][0]["message"]["content"]
    chunks = [json.loads(b[6:]) for b in response.text.split("\n\n") if b.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def assert_history_attached(e2e, prompt: str, account: str) -> None:
    assert prompt.startswith("You are terse.\n\n" + HISTORY_NOTE)
    assert "the latest question about pears" in prompt and "apples" not in prompt
    files = [f for f in e2e.fake.files.values() if f.account == account and f.name == HISTORY_FILE]
    assert len(files) == 1
    history = files[0].data.decode()
    assert history == "user: first question about apples\nassistant: first answer about apples"


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_a_long_history_goes_up_as_a_file_up_front(e2e, two, settings, protocol):
    settings.KIMIPROXY_PROMPT_ATTACH_BYTES = 60
    _, _, raw = two(protocol)
    e2e.fake.reply(text="pears are fine")

    response = ask(e2e, raw)

    assert answer_text(response) == "pears are fine"
    (prompt,) = e2e.fake.prompts("first")
    assert_history_attached(e2e, prompt, "first")
    log = wait_for_final_log(response.headers["x-request-id"])
    assert "history_attached" in log.flags


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_prompt_is_sent_again_on_the_same_account_with_its_history_attached(e2e, two, protocol, stream):
    first, second, raw = two(protocol)
    e2e.fake.fault("context_too_long", account="first")
    e2e.fake.reply(text="pears are fine")

    response = ask(e2e, raw, stream=stream)

    assert response.status_code == 200 and answer_text(response) == "pears are fine"
    refused, retried = e2e.fake.prompts("first")
    assert "first question about apples" in refused  # the flattened history, inline
    assert_history_attached(e2e, retried, "first")
    assert e2e.fake.prompts("second") == []
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.account_id, log.attempts, log.outcome) == (first.pk, 1, "ok")
    assert "history_attached" in log.flags
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())  # the refused chat too
    assert Turn.objects.filter(account=first).exclude(status="refunded").count() == 1


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_a_prompt_refused_twice_is_a_400_without_failover_cooldown_or_a_counted_turn(e2e, two, protocol):
    first, second, raw = two(protocol)
    e2e.fake.fault("context_too_long", account="first", times=2)

    response = ask(e2e, raw)

    assert response.status_code == 400
    error = response.json()["error"]
    expected = ("invalid_request_error", "context_length_exceeded", "messages")
    assert (error["type"], error["code"], error["param"]) == expected
    assert len(e2e.fake.prompts("first")) == 2 and e2e.fake.prompts("second") == []
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.status_code, log.error_code, log.attempts) == (400, "context_length_exceeded", 1)
    wait_for_background_tasks()
    first.refresh_from_db()
    assert first.state == "active" and first.cooldown_until is None
    assert not Turn.objects.filter(account=first).exclude(status="refunded").exists()
    assert all(chat.deleted for chat in e2e.fake.chats.values())


def test_a_single_message_too_long_has_no_history_to_move_and_is_refused_at_once(e2e, two):
    _, _, raw = two("connect")
    e2e.fake.fault("context_too_long", account="first")

    response = ask(e2e, raw, messages=[{"role": "user", "content": "one huge message"}])

    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert e2e.fake.prompts("first") == ["one huge message"]
