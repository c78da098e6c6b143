"""Plain chat through the running gateway with the official openai SDK, both protocols."""

from __future__ import annotations

import pytest

from gateway.models import Conversation, RequestLog
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import setup_pool

PROTOCOLS = ["connect", "legacy"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_answers_a_plain_chat(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="Hello there, human friend.", chunk_size=5)

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=[{"role": "user", "content": "hi"}])
    completion = raw.parse()

    assert completion.choices[0].message.content == "Hello there, human friend."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "kimi"
    assert completion.usage.completion_tokens > 0
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert (log.status_code, log.outcome, log.attempts) == (200, "ok", 1)
    assert log.upstream_chat_id and log.ttft_ms is not None
    assert e2e.fake.prompts() == ["hi"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_streams_a_plain_chat(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="One two three four five.", chunk_size=4)

    stream = client.chat.completions.create(
        model="kimi",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four five."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 5  # really streamed


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_deletes_the_upstream_chat_after_the_answer(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=[{"role": "user", "content": "hi"}])
    log = wait_for_final_log(raw.headers["x-request-id"])

    _wait(lambda: e2e.fake.chats[log.upstream_chat_id].deleted)
    _wait(lambda: not Conversation.objects.exists())
    assert RequestLog.objects.count() == 1


def _wait(predicate, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
