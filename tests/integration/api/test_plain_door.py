"""The test-only plain-text door (plain_door.py) runs through the same pipeline as chat completions:
accept and its log row, reservation, failover before and after the answer began, both sinks, the
final write and the chat delete — with no change outside its own module."""

from __future__ import annotations

import json

import httpx
import pytest
from django.urls import include, path

from accounts.models import KimiAccount, Turn
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account
from tests.integration.api.plain_door import plain_view

urlpatterns = [path("v1/plain", plain_view), path("", include("kimiproxy.urls"))]


@pytest.fixture
def door(e2e, settings):
    settings.ROOT_URLCONF = __name__
    first = pool_account(e2e.fake, "first")
    second = pool_account(e2e.fake, "second")
    KimiAccount.objects.filter(pk=second.pk).update(last_used_at="2030-01-01T00:00:00Z")  # "first" goes first
    _, raw = make_api_key()

    def post(body: object) -> httpx.Response:
        return httpx.post(f"{e2e.url}/v1/plain", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=20)

    e2e.post, e2e.first, e2e.second = post, first, second
    return e2e


def events(response: httpx.Response) -> list[tuple[str, object]]:
    out = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"]) if "data" in lines else None))
    return out


def assert_served_and_cleaned_up(door, response: httpx.Response, *, account, attempts: int) -> None:
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.path, log.outcome, log.status_code) == ("/v1/plain", "ok", 200)
    assert (log.account_id, log.attempts) == (account.pk, attempts)
    wait_for_background_tasks()
    assert log.upstream_chat_id and door.fake.chats[log.upstream_chat_id].deleted
    assert not Turn.objects.filter(status="in_flight").exists()


def test_it_answers_a_collected_request(door):
    door.fake.reply(text="plain hello")
    response = door.post({"prompt": "hi"})
    assert (response.status_code, response.json()) == (200, {"text": "plain hello"})
    assert door.fake.prompts("first") == ["hi"]
    assert_served_and_cleaned_up(door, response, account=door.first, attempts=1)


def test_it_streams_in_its_own_event_shape(door):
    door.fake.reply(text="plain streamed answer", chunk_size=5)
    response = door.post({"prompt": "hi", "stream": True})
    got = events(response)
    assert got[-1] == ("end", None)
    assert "".join(str(data) for name, data in got if name == "text") == "plain streamed answer"
    assert_served_and_cleaned_up(door, response, account=door.first, attempts=1)


@pytest.mark.parametrize("stream", [False, True])
def test_it_fails_over_before_the_answer_begins(door, stream):
    door.fake.fault("overloaded", account="first")
    door.fake.reply(text="from the second account")
    response = door.post({"prompt": "hi", "stream": stream})
    text = response.json()["text"] if not stream else "".join(str(d) for n, d in events(response) if n == "text")
    assert text == "from the second account"
    assert_served_and_cleaned_up(door, response, account=door.second, attempts=2)
    door.first.refresh_from_db()
    assert door.first.state == "cooling"


def test_a_collected_answer_fails_over_after_a_mid_answer_cut(door):
    door.fake.reply(text="a long answer that the first account cuts", chunk_size=4, account="first")
    door.fake.fault("cut", after_events=6, account="first")
    door.fake.reply(text="whole answer")
    response = door.post({"prompt": "hi"})
    assert response.json() == {"text": "whole answer"}
    assert_served_and_cleaned_up(door, response, account=door.second, attempts=2)


def test_a_stream_cut_mid_answer_ends_with_its_own_problem_event(door):
    door.fake.reply(text="partial answer that will be cut", chunk_size=4)
    door.fake.fault("cut", after_events=8)
    response = door.post({"prompt": "hi", "stream": True})
    name, data = events(response)[-1]
    assert name == "problem" and isinstance(data, dict) and data["code"]
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.outcome == "upstream_error" and log.status_code >= 500
    wait_for_background_tasks()
    assert not Turn.objects.filter(status="in_flight").exists()


def test_bad_input_gets_its_own_error_shape_and_a_final_log_row(door):
    response = door.post({"nothing": "here"})
    assert response.status_code == 400
    assert response.json() == {"problem": "Send {'prompt': '<text>'}.", "code": "missing_prompt", "status": 400}
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.status_code, log.error_code) == (400, "missing_prompt")


def test_no_account_left_is_a_429_in_its_own_shape(door):
    KimiAccount.objects.update(state="disabled")
    response = door.post({"prompt": "hi"})
    assert response.status_code == 429 and response.json()["code"] == "rate_limit_exceeded"
    assert int(response.headers["retry-after"]) >= 1
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.outcome == "rate_limited"


@pytest.mark.parametrize("stream", [False, True])
def test_a_local_answer_spends_no_turn_and_is_logged_as_local(door, stream):
    response = door.post({"prompt": "how many tokens?", "local": "42 tokens", "stream": stream})
    text = response.json()["text"] if not stream else "".join(str(d) for n, d in events(response) if n == "text")
    assert (response.status_code, text) == (200, "42 tokens")
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.outcome, log.status_code, log.account_id, log.attempts) == ("local", 200, None, 0)
    assert door.fake.chats == {} and not Turn.objects.exists()  # nothing reached Kimi, no turn reserved


def test_a_probe_is_answered_locally_unless_the_key_sends_probes_upstream(door):
    response = door.post({"prompt": "quota?", "probe": True})
    assert (response.status_code, response.json()) == (200, {"text": ""})
    assert wait_for_final_log(response.headers["x-request-id"]).outcome == "local"
    assert door.fake.chats == {}

    _, raw = make_api_key(name="probes-upstream", local_probes=False)
    door.fake.reply(text="real answer")
    response = httpx.post(
        f"{door.url}/v1/plain", json={"prompt": "quota?", "probe": True}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.json() == {"text": "real answer"}
    assert_served_and_cleaned_up(door, response, account=door.first, attempts=1)


def test_the_model_that_really_answers_is_in_a_header(door, settings):
    settings.KIMIPROXY_MODEL_ALIASES = (("claude-opus-4", "kimi-thinking"),)
    door.fake.reply(text="thought about it")
    response = door.post({"prompt": "hi", "model": "claude-opus-4-20250514"})
    assert response.headers["x-kimiproxy-model"] == "kimi-thinking"
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.model == "claude-opus-4-20250514"
    assert {"thinking", "served:kimi-thinking"} <= set(log.flags)
    wait_for_background_tasks()
