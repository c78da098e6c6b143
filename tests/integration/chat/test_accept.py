"""gateway/chat/accept.py: an HTTP request -> a frozen ``Job`` (the caller, the neutral turn, the log
row, the files as bytes), or a refusal that leaves its final log row. Driven with Django's
``AsyncRequestFactory`` and the chat completions door's parser, without an account being involved."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.test import AsyncRequestFactory

from gateway import lifecycle
from gateway.api.chat_completions import DOOR
from gateway.chat.accept import accept
from gateway.models import Conversation, RequestLog
from gateway.openai.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimitExceeded,
)
from gateway.openai.request import ChatRequest
from gateway.records.conversations import ContinuedConversation
from tests.factories import make_api_key
from tests.integration.chat.helpers import kept_conversation, orm

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "kimi", "messages": [{"role": "user", "content": "hi"}], **extra}


def http_request(body: object, *, key: str | None, raw: bytes | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else json.dumps(body)
    return AsyncRequestFactory().post(
        "/v1/chat/completions", data=data, content_type="application/json", headers=headers
    )


async def accepted(request: Any, request_id: str = "req-1") -> Any:
    return await accept(request, parse=DOOR.parse, request_id=request_id)


async def final_row(request_id: str) -> RequestLog:
    assert await lifecycle.drain(5) == 0
    row = await orm(RequestLog.objects.get, request_id=request_id)
    assert row.outcome != "pending" and row.finished_at is not None
    return row


@pytest.fixture
async def caller(pool):
    """A key with a model allow-list, and its full value (for the Authorization header)."""
    return await orm(make_api_key, allowed_models=["kimi", "kimi-thinking"])


async def test_it_hands_over_the_caller_the_turn_and_a_pending_log_row(caller, settings):
    settings.KIMIPROXY_LOG_PREVIEWS = True
    api_key, raw = caller
    before = time.monotonic()

    job, parsed = await accepted(http_request(chat_body(model="kimi-thinking", stream=True, user="u1"), key=raw))

    assert isinstance(parsed, ChatRequest) and parsed.stream
    assert (job.request_id, job.caller.api_key_id, job.api_key.pk) == ("req-1", api_key.pk, api_key.pk)
    assert (job.turn.model.requested, job.turn.stream, job.turn.user) == ("kimi-thinking", True, "u1")
    assert (job.prompt_text, job.flags, job.blobs, job.continued) == ("hi", ("thinking",), (), None)
    assert before <= job.started <= time.monotonic()
    row = await orm(RequestLog.objects.get, pk=job.log_id)
    assert (row.request_id, row.outcome, row.path, row.model, row.stream) == (
        "req-1",
        "pending",
        "/v1/chat/completions",
        "kimi-thinking",
        True,
    )
    assert (row.api_key_id, row.prompt_chars, row.prompt_preview, row.flags) == (api_key.pk, 2, "hi", ["thinking"])


@pytest.mark.parametrize("raw", [None, "sk-kp-unknown", "Basic abc"])
async def test_a_caller_without_a_valid_key_is_refused_with_a_final_row(pool, raw):
    request = http_request(chat_body(), key=None)
    if raw:
        request.META["HTTP_AUTHORIZATION"] = raw if " " in raw else f"Bearer {raw}"
    with pytest.raises(AuthenticationFailed):
        await accepted(request)
    row = await final_row("req-1")
    assert (row.status_code, row.outcome, row.error_code, row.api_key_id) == (
        401,
        "client_error",
        "invalid_api_key",
        None,
    )


async def test_a_bad_body_is_refused_only_once_the_caller_is_known(caller):
    api_key, raw = caller
    with pytest.raises(InvalidRequest):
        await accepted(http_request({"model": "kimi", "messages": []}, key=raw))
    row = await final_row("req-1")
    assert (row.status_code, row.outcome, row.api_key_id) == (400, "client_error", api_key.pk)


async def test_a_bad_body_from_an_unknown_caller_is_an_authentication_failure(pool):
    with pytest.raises(AuthenticationFailed):
        await accepted(http_request(None, key="sk-kp-unknown", raw=b"{not json"))
    row = await final_row("req-1")
    assert (row.status_code, row.error_code) == (401, "invalid_api_key")


async def test_a_model_outside_the_keys_allow_list_is_refused(caller):
    api_key, raw = caller
    with pytest.raises(PermissionDenied):
        await accepted(http_request(chat_body(model="kimi-search"), key=raw))
    row = await final_row("req-1")
    assert (row.status_code, row.error_code, row.api_key_id, row.model) == (
        403,
        "model_not_allowed",
        api_key.pk,
        "kimi-search",
    )


async def test_an_unknown_conversation_is_refused_with_its_row(caller):
    _, raw = caller
    with pytest.raises(NotFound):
        await accepted(http_request(chat_body(conversation_id="chat-nope"), key=raw))
    assert (await final_row("req-1")).error_code == "conversation_not_found"


async def test_a_kept_conversation_is_claimed_for_the_job(pool):
    pool.key, raw = await orm(make_api_key)
    row_id = await kept_conversation(pool, pool.second, "chat-kept", "msg-1")

    job, _ = await accepted(http_request(chat_body(conversation_id="chat-kept"), key=raw))

    assert job.continued == ContinuedConversation(row_id, pool.second.pk, "chat-kept", "msg-1")
    assert (await orm(Conversation.objects.get, pk=row_id)).state == "active"  # claimed: no second taker


async def test_a_continuation_refused_by_the_keys_limit_gives_its_conversation_back(pool):
    pool.key, raw = await orm(make_api_key, rpm=1)
    row_id = await kept_conversation(pool, pool.first, "chat-kept", "msg-1")
    await accepted(http_request(chat_body(), key=raw), request_id="req-0")  # uses the key's one request

    with pytest.raises(RateLimitExceeded):
        await accepted(http_request(chat_body(conversation_id="chat-kept"), key=raw))

    assert (await orm(Conversation.objects.get, pk=row_id)).state == "kept"
    row = await final_row("req-1")
    assert (row.status_code, row.outcome) == (429, "rate_limited")


async def test_a_data_url_file_arrives_as_bytes_without_a_fetch(caller):
    _, raw = caller
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    job, _ = await accepted(http_request(chat_body(messages=[{"role": "user", "content": content}]), key=raw))
    assert len(job.blobs) == 1 and job.blobs[0].data.startswith(b"\x89PNG") and job.blobs[0].mime_type == "image/png"


async def test_a_refused_file_url_finishes_the_request(caller):
    api_key, raw = caller
    content = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/secret.png"}}]  # the SSRF guard says no
    with pytest.raises(InvalidRequest) as caught:
        await accepted(http_request(chat_body(messages=[{"role": "user", "content": content}]), key=raw))
    assert (caught.value.code, caught.value.param) == ("file_url_refused", "messages[0].content[0].image_url.url")
    row = await final_row("req-1")  # the row was accepted first: the final write ends it
    assert (row.status_code, row.error_code, row.api_key_id, row.attempts) == (400, "file_url_refused", api_key.pk, 0)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_refused_even_without_a_length(caller, settings, declared):
    api_key, raw = caller
    settings.KIMIPROXY_MAX_BODY_BYTES = 200
    request = http_request(chat_body(messages=[{"role": "user", "content": "x" * 500}]), key=raw)
    if not declared:
        del request.META["CONTENT_LENGTH"]
    with pytest.raises(PayloadTooLarge):
        await accepted(request)
    row = await final_row("req-1")
    assert (row.status_code, row.api_key_id) == (413, api_key.pk)
