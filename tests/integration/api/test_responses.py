"""The OpenAI Responses door (``/v1/responses``) with the official ``openai`` SDK against the fake Kimi:
plain answers stream and not, reasoning, search, the probe, errors, failover and a mid-stream cut."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from accounts.models import KimiAccount
from gateway.models import ApiKey, RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account, setup_pool
from tests.responses_order import assert_official_order


def sse_events(response: httpx.Response) -> list[dict[str, object]]:
    """The ``data:`` payloads of a raw event stream, checking each ``event:`` line names its type."""
    out = []
    for block in response.text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        data = json.loads(fields["data"])
        assert fields["event"] == data["type"]
        out.append(data)
    return out


def raw_post(e2e, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{e2e.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_a_plain_answer_and_its_log_row(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="Hello from Responses.")
    response = client.responses.create(model="kimi", input="Say hello", store=False)
    assert response.object == "response" and response.id.startswith("resp_")
    assert (response.status, response.output_text) == ("completed", "Hello from Responses.")
    assert [item.type for item in response.output] == ["message"]
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert e2e.fake.prompts() == ["Say hello"]
    log = wait_for_final_log(response._request_id)
    assert (log.path, log.outcome, log.status_code) == ("/v1/responses", "ok", 200)
    wait_for_background_tasks()
    chats = e2e.fake.chats
    assert len(chats) == 1 and all(chat.deleted for chat in chats.values())  # store: false keeps nothing


def test_a_streamed_answer_follows_the_official_sequence(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="streamed words here", chunk_size=4)
    with client.responses.stream(model="kimi", input="hi", store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert_official_order(events)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert {k for k in kinds[4:-4]} == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "streamed words here" and final.status == "completed"
    assert final.id == events[0].response.id


def test_reasoning_comes_as_a_reasoning_item_before_the_message(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="42", thinking="Let me think about it.")
    response = client.responses.create(
        model="kimi-thinking", input="answer?", store=False, reasoning={"effort": "high"}
    )
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.content and reasoning.content[0].text == "Let me think about it."
    assert response.output_text == "42"


def test_a_reasoning_summary_is_streamed_with_its_summary_index(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="42", thinking="Thinking hard.")
    with client.responses.stream(
        model="kimi-thinking", input="answer?", store=False, reasoning={"summary": "auto"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert_official_order(events)
    deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert deltas and all(e.summary_index == 0 for e in deltas)
    assert "response.reasoning_summary_part.added" in [e.type for e in events]
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Thinking hard."


def test_web_search_gives_a_search_item_and_url_citations(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="Paris is sunny [^1^].", search=[{"title": "Weather", "url": "https://example.org/w"}])
    response = client.responses.create(model="kimi", input="weather?", tools=[{"type": "web_search"}], store=False)
    kinds = [item.type for item in response.output]
    assert kinds[0] == "web_search_call" and "message" in kinds
    message = next(item for item in response.output if item.type == "message")
    annotations = message.content[0].annotations
    assert annotations and annotations[0].type == "url_citation" and annotations[0].url == "https://example.org/w"
    text = message.content[0].text
    assert text[annotations[0].start_index : annotations[0].end_index] == "[1]"


def test_other_hosted_tools_are_refused_by_name(e2e):
    client, _ = setup_pool(e2e)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="kimi", input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}])
    assert "file_search" in caught.value.message and caught.value.body["code"] == "unsupported_tool_type"


@pytest.mark.parametrize("stream", [False, True])
def test_a_probe_is_answered_locally(e2e, stream):
    client, _ = setup_pool(e2e)
    if stream:
        with client.responses.stream(model="kimi", input="ping", max_output_tokens=1) as s:
            assert_official_order(list(s))
            final = s.get_final_response()
    else:
        final = client.responses.create(model="kimi", input="ping", max_output_tokens=1)
    assert final.status == "completed" and final.output_text == ""
    assert [item.type for item in final.output] == ["message"]
    assert e2e.fake.chats == {} and e2e.fake.prompts() == []
    log = wait_for_final_log(RequestLog.objects.get(path="/v1/responses").request_id)
    assert (log.outcome, log.account_id, log.attempts) == ("local", None, 0)


def test_a_mid_stream_cut_ends_with_response_failed(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="a long answer that will be cut off", chunk_size=3)
    e2e.fake.fault("cut", after_events=6)
    with client.responses.stream(model="kimi", input="hi", store=False) as stream:
        events = list(stream)
    assert_official_order(events)
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.code
    assert [e.sequence_number for e in events] == list(range(len(events)))
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())


def test_a_raw_cut_stream_ends_with_response_failed_and_its_log_row(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="a long answer that will be cut off", chunk_size=3)
    e2e.fake.fault("cut", after_events=6)
    response = raw_post(e2e, client.api_key, {"model": "kimi", "input": "hi", "stream": True, "store": False})
    events = sse_events(response)
    assert_official_order(events)
    assert events[-1]["type"] == "response.failed"
    log = wait_for_final_log(response.headers["x-request-id"])
    assert log.outcome == "upstream_error" and log.status_code >= 500


def test_no_account_is_rate_limit_exceeded_with_openais_wording(e2e):
    client, _ = setup_pool(e2e)
    KimiAccount.objects.update(state="disabled")
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="kimi", input="hi")
    body = caught.value.body
    assert body["code"] == "rate_limit_exceeded"
    assert body["message"].endswith("s.") and "Please try again in " in body["message"]


def test_a_spent_key_budget_is_insufficient_quota(e2e):
    client, key = setup_pool(e2e)
    ApiKey.objects.filter(pk=key.pk).update(turns_per_day=1)
    e2e.fake.reply(text="one")
    client.responses.create(model="kimi", input="hi", store=False)
    wait_for_background_tasks()
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="kimi", input="again", store=False)
    assert caught.value.body["code"] == "insufficient_quota"
    assert "Please try again" not in caught.value.body["message"]  # final: clients do not retry it


def test_a_prompt_kimi_refuses_as_too_long_is_context_length_exceeded(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.fault("context_too_long")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="kimi", input="a very long question", store=False)
    body = caught.value.body
    assert (body["code"], body["param"]) == ("context_length_exceeded", "input")


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_first_account_fails_over_before_the_answer_begins(e2e, stream):
    first = pool_account(e2e.fake, "first")
    pool_account(e2e.fake, "second")
    KimiAccount.objects.filter(name="second").update(last_used_at="2030-01-01T00:00:00Z")  # "first" goes first
    _, raw = make_api_key()
    e2e.fake.fault("overloaded", account="first")
    e2e.fake.reply(text="from the second account")
    body = {"model": "kimi", "input": "hi", "stream": stream, "store": False}
    response = httpx.post(f"{e2e.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=20)
    if stream:
        events = sse_events(response)
        assert_official_order(events)
        output = events[-1]["response"]["output"]
    else:
        output = response.json()["output"]
    assert output[-1]["content"][0]["text"] == "from the second account"
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.attempts, log.outcome) == (2, "ok") and log.account_id != first.pk
    wait_for_background_tasks()
    assert all(chat.deleted for chat in e2e.fake.chats.values())


def test_a_collected_answer_cut_mid_way_fails_over_and_starts_again(e2e):
    pool_account(e2e.fake, "first")
    pool_account(e2e.fake, "second")
    KimiAccount.objects.filter(name="second").update(last_used_at="2030-01-01T00:00:00Z")
    _, raw = make_api_key()
    e2e.fake.reply(text="a long answer that the first account cuts", chunk_size=4, account="first")
    e2e.fake.fault("cut", after_events=6, account="first")
    e2e.fake.reply(text="whole answer")
    body = {"model": "kimi", "input": "hi", "store": False}
    response = httpx.post(f"{e2e.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=20)
    output = response.json()["output"]
    assert [item["type"] for item in output] == ["message"]  # nothing of the cut answer is left
    assert output[0]["content"][0]["text"] == "whole answer"
    assert wait_for_final_log(response.headers["x-request-id"]).attempts == 2


def test_silences_get_keep_alive_comments_between_the_events(e2e, settings):
    settings.KIMIPROXY_KEEPALIVE_SECONDS = 0.2
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="after the pause")
    e2e.fake.fault("stall", interval=0.3, duration=1.0)
    response = raw_post(e2e, client.api_key, {"model": "kimi", "input": "x", "stream": True, "store": False})
    assert ": keep-alive" in response.text and response.headers["X-Accel-Buffering"] == "no"
    events = sse_events(response)
    assert_official_order(events)
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "after the pause"
