"""The Anthropic Messages door (gateway/api/messages.py) driven by the official ``anthropic`` SDK over
HTTP against the live app and the fake Kimi: collected and streamed answers, thinking, count_tokens,
probes, errors in Anthropic's shapes, failover and a mid-stream failure, the final log row and the
deleted upstream chat."""

from __future__ import annotations

import re
import threading
import time

import anthropic
import httpx
import pytest

from accounts.models import KimiAccount, Turn
from gateway.anthropic.thinking import signing_key, thinking_signature
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account

MODEL = "claude-sonnet-4-5-20250929"
ASK = [{"role": "user", "content": "Say hello."}]


def client_for(url: str, key: str, **kwargs: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=20, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def door(e2e):
    e2e.first = pool_account(e2e.fake, "first")
    _, e2e.raw = make_api_key()
    e2e.client = client_for(e2e.url, e2e.raw)
    return e2e


def second_account(door) -> None:
    door.second = pool_account(door.fake, "second")
    KimiAccount.objects.filter(pk=door.second.pk).update(last_used_at="2030-01-01T00:00:00Z")  # first goes first


def assert_served_and_cleaned_up(door, request_id: str, *, account, attempts: int = 1) -> None:
    log = wait_for_final_log(request_id)
    assert (log.path, log.outcome, log.status_code) == ("/v1/messages", "ok", 200)
    assert (log.account_id, log.attempts) == (account.pk, attempts)
    wait_for_background_tasks()
    assert log.upstream_chat_id and door.fake.chats[log.upstream_chat_id].deleted
    assert not Turn.objects.filter(status="in_flight").exists()


def test_a_collected_answer_is_an_anthropic_message(door):
    door.fake.reply(text="Hello from Kimi.")
    raw = door.client.messages.with_raw_response.create(model=MODEL, max_tokens=1024, system="Be brief.", messages=ASK)
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL  # a Claude name is echoed, and answered by Kimi
    assert raw.headers["x-kimiproxy-model"] == "kimi"
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello from Kimi.")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 4
    (prompt,) = door.fake.prompts()
    assert "Be brief." in prompt and "Say hello." in prompt
    assert_served_and_cleaned_up(door, raw.headers["request-id"], account=door.first)


def test_a_streamed_answer_is_rebuilt_by_the_sdk(door):
    door.fake.reply(text="Hello in small pieces.", chunk_size=3)
    with door.client.messages.stream(model=MODEL, max_tokens=1024, messages=ASK) as stream:
        names = [event.type for event in stream]
        final = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert [(b.type, b.text) for b in final.content] == [("text", "Hello in small pieces.")]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    # The official order (the SDK adds its own "text" events beside the deltas).
    raw = [
        n
        for n in names
        if n
        in (
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        )
    ]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(raw[2:-3]) == {"content_block_delta"}
    assert_served_and_cleaned_up(door, request_id, account=door.first)


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_comes_back_as_signed_thinking_blocks(door, stream, settings):
    door.fake.reply(text="The answer is 4.", thinking="2 plus 2 is 4.", chunk_size=4)
    kwargs = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": ASK,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    if stream:
        with door.client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            message = s.get_final_message()
    else:
        message = door.client.messages.create(**kwargs)  # type: ignore[arg-type]
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "2 plus 2 is 4."
    assert thinking.signature == thinking_signature("2 plus 2 is 4.", key=signing_key(settings.SECRET_KEY))
    assert text.type == "text" and text.text == "The answer is 4."
    assert {"thinking", "effort:low"} <= set(wait_for_final_log(latest_request_id()).flags)  # a 1024 budget


@pytest.mark.parametrize("stream", [False, True])
def test_omitted_thinking_keeps_the_block_without_its_text(door, stream):
    door.fake.reply(text="Done.", thinking="secret reasoning")
    kwargs = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": ASK,
        "thinking": {"type": "adaptive", "display": "omitted"},
    }
    if stream:
        with door.client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            message = s.get_final_message()
    else:
        message = door.client.messages.create(**kwargs)  # type: ignore[arg-type]
    thinking, text = message.content
    assert (thinking.type, thinking.thinking, text.text) == ("thinking", "", "Done.")
    assert thinking.signature


def test_reasoning_is_not_shown_unless_thinking_was_asked_for(door):
    door.fake.reply(text="Plain.", thinking="hidden reasoning")
    message = door.client.messages.create(
        model="kimi-thinking", max_tokens=100, messages=ASK, thinking={"type": "disabled"}
    )
    assert [b.type for b in message.content] == ["text"]


def test_count_tokens_is_answered_locally(door):
    count = door.client.messages.count_tokens(model=MODEL, system="You are terse.", messages=ASK)
    assert count.input_tokens >= 5
    longer = door.client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "word " * 400}])
    assert longer.input_tokens > count.input_tokens
    log = wait_for_final_log(latest_request_id())
    assert (log.path, log.outcome, log.account_id) == ("/v1/messages/count_tokens", "local", None)
    assert door.fake.chats == {} and not Turn.objects.exists()


def latest_request_id() -> str:
    from gateway.models import RequestLog

    return RequestLog.objects.order_by("-id").values_list("request_id", flat=True)[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_max_tokens_1_probe_is_answered_locally(door, stream):
    if stream:
        with door.client.messages.stream(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "quota"}]
        ) as s:
            message = s.get_final_message()
            request_id = s.response.headers["request-id"]
    else:
        raw = door.client.messages.with_raw_response.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "quota"}]
        )
        message, request_id = raw.parse(), raw.headers["request-id"]
    assert message.stop_reason == "max_tokens" and [(b.type, b.text) for b in message.content] == [("text", "")]
    log = wait_for_final_log(request_id)
    assert (log.outcome, log.account_id, log.attempts) == ("local", None, 0)
    assert door.fake.chats == {}


def test_a_key_can_send_probes_upstream(door):
    _, raw = make_api_key(name="probes-upstream", local_probes=False)
    door.fake.reply(text="Hi")
    answer = client_for(door.url, raw).messages.with_raw_response.create(model=MODEL, max_tokens=1, messages=ASK)
    assert answer.parse().content[0].text == "Hi"  # one token by the estimate: within max_tokens
    assert_served_and_cleaned_up(door, answer.headers["request-id"], account=door.first)


def test_bearer_auth_and_beta_headers_work_too(door):
    door.fake.reply(text="Bearer works.")
    client = anthropic.Anthropic(base_url=door.url, auth_token=door.raw, max_retries=0, timeout=20)
    message = client.beta.messages.create(  # ?beta=true and an anthropic-beta list
        model=MODEL, max_tokens=100, messages=ASK, betas=["interleaved-thinking-2025-05-14", "made-up-beta-2099"]
    )
    assert message.content[0].text == "Bearer works."


def test_a_bad_key_is_an_authentication_error(door):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client_for(door.url, "sk-wrong").messages.create(model=MODEL, max_tokens=10, messages=ASK)
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": MODEL, "messages": ASK}, "max_tokens"),
        ({"max_tokens": 10, "messages": ASK}, "model"),
        ({"model": MODEL, "max_tokens": 10, "messages": [*ASK, {"role": "robot", "content": "x"}]}, "role"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": ASK, "tools": [{"type": "bash_20250124", "name": "bash"}]},
            "bash_20250124",
        ),
    ],
)
def test_a_bad_request_is_an_invalid_request_error(door, body, param):
    response = httpx.post(f"{door.url}/v1/messages", json=body, headers={"x-api-key": door.raw}, timeout=20)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param in error["error"]["message"]
    log = wait_for_final_log(response.headers["request-id"])
    assert log.status_code == 400


def test_no_account_left_is_a_rate_limit_error_with_retry_after(door):
    KimiAccount.objects.update(state="disabled")
    with pytest.raises(anthropic.RateLimitError) as caught:
        door.client.messages.create(model=MODEL, max_tokens=10, messages=ASK)
    assert caught.value.status_code == 429 and int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_every_account_busy_is_overloaded_529(door, settings):
    settings.KIMIPROXY_QUEUE_TIMEOUT = 0.2
    KimiAccount.objects.update(max_concurrent=1)
    door.fake.reply(text="slow answer", delay=1.5)
    holder = threading.Thread(target=lambda: door.client.messages.create(model=MODEL, max_tokens=50, messages=ASK))
    holder.start()  # holds the only slot
    deadline = time.monotonic() + 5
    while not Turn.objects.filter(status="in_flight").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(anthropic.APIStatusError) as caught:
        door.client.messages.create(model=MODEL, max_tokens=10, messages=ASK)
    holder.join()
    assert caught.value.status_code == 529 and caught.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("stream", [False, True])
def test_it_fails_over_before_the_answer_begins(door, stream):
    second_account(door)
    door.fake.fault("overloaded", account="first")
    door.fake.reply(text="from the second account")
    if stream:
        with door.client.messages.stream(model=MODEL, max_tokens=100, messages=ASK) as s:
            message = s.get_final_message()
            request_id = s.response.headers["request-id"]
    else:
        raw = door.client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=ASK)
        message, request_id = raw.parse(), raw.headers["request-id"]
    assert message.content[0].text == "from the second account"
    assert_served_and_cleaned_up(door, request_id, account=door.second, attempts=2)


def test_a_stream_cut_mid_answer_ends_with_an_error_event(door):
    door.fake.reply(text="partial answer that will be cut", chunk_size=4)
    door.fake.fault("cut", after_events=8)
    response = httpx.post(
        f"{door.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 100, "messages": ASK, "stream": True},
        headers={"x-api-key": door.raw},
        timeout=20,
    )
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    assert blocks[0].startswith("event: message_start")
    assert blocks[-1].startswith("event: error\n")
    assert '"type":"error"' in blocks[-1] and '"type":"api_error"' in blocks[-1]
    assert not any(b.startswith("event: message_stop") for b in blocks)
    sdk_request_ids = []
    with pytest.raises(anthropic.APIStatusError):  # the SDK raises it too
        door.fake.reply(text="partial answer that will be cut", chunk_size=4)
        door.fake.fault("cut", after_events=8)
        with door.client.messages.stream(model=MODEL, max_tokens=100, messages=ASK) as s:
            sdk_request_ids.append(s.response.headers["request-id"])
            s.get_final_message()
    for request_id in [response.headers["request-id"], *sdk_request_ids]:
        log = wait_for_final_log(request_id)  # the client saw the end before the final write was spawned
        assert log.outcome == "upstream_error" and log.status_code >= 500
    wait_for_background_tasks()
    assert not Turn.objects.filter(status="in_flight").exists()


def test_stop_sequences_end_the_answer_with_stop_sequence(door):
    door.fake.reply(text="one two STOP three", chunk_size=3)
    message = door.client.messages.create(model=MODEL, max_tokens=100, messages=ASK, stop_sequences=["STOP"])
    assert (message.content[0].text, message.stop_reason, message.stop_sequence) == (
        "one two ",
        "stop_sequence",
        "STOP",
    )


def test_max_tokens_cuts_the_answer(door):
    door.fake.reply(text="a" * 400)
    message = door.client.messages.create(model=MODEL, max_tokens=10, messages=ASK)
    assert message.stop_reason == "max_tokens" and len(message.content[0].text) == 40


def test_a_claude_alias_is_served_by_its_target(door, settings):
    settings.KIMIPROXY_MODEL_ALIASES = (("claude-opus-4", "kimi-thinking"),)
    door.fake.reply(text="thought about it", thinking="hmm")
    raw = door.client.messages.with_raw_response.create(model="claude-opus-4-1-20250805", max_tokens=100, messages=ASK)
    assert raw.headers["x-kimiproxy-model"] == "kimi-thinking"
    message = raw.parse()
    assert message.model == "claude-opus-4-1-20250805"
    assert [b.type for b in message.content] == ["thinking", "text"]  # a thinking model name turns it on


def test_a_conversation_too_long_is_claudes_prompt_is_too_long(door):
    door.fake.fault("context_too_long", times=2)
    with pytest.raises(anthropic.BadRequestError) as caught:
        door.client.messages.create(
            model=MODEL, max_tokens=100, messages=[*ASK, {"role": "assistant", "content": "hi"}, *ASK]
        )
    message = caught.value.body["error"]["message"]
    assert re.match(r"prompt is too long: \d+ tokens > \d+ maximum", message)  # what Claude Code parses
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_a_collected_answer_fails_over_after_a_mid_answer_cut(door):
    second_account(door)
    door.fake.reply(text="a long answer that the first account cuts", chunk_size=4, account="first")
    door.fake.fault("cut", after_events=6, account="first")
    door.fake.reply(text="whole answer")
    raw = door.client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=ASK)
    assert [(b.type, b.text) for b in raw.parse().content] == [("text", "whole answer")]
    assert_served_and_cleaned_up(door, raw.headers["request-id"], account=door.second, attempts=2)


def test_an_unknown_path_under_messages_is_an_anthropic_404(door):
    response = httpx.post(f"{door.url}/v1/messages/batches", json={}, headers={"x-api-key": door.raw})
    assert response.status_code == 404
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "not_found_error"


def test_silences_get_pings_the_sdk_skips(door, settings):
    settings.KIMIPROXY_KEEPALIVE_SECONDS = 0.2
    door.fake.reply(text="after the pause")
    door.fake.fault("stall", interval=0.3, duration=1.0)
    response = httpx.post(
        f"{door.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 100, "messages": ASK, "stream": True},
        headers={"x-api-key": door.raw},
        timeout=20,
    )
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert "ping" in names and names[0] == "message_start" and names[-1] == "message_stop"
    door.fake.reply(text="after the pause")
    door.fake.fault("stall", interval=0.3, duration=1.0)
    with door.client.messages.stream(model=MODEL, max_tokens=100, messages=ASK) as stream:
        assert stream.get_final_text() == "after the pause"
