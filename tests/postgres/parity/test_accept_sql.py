"""The one-statement accept on PostgreSQL (gateway/db/accept_sql.py) against the ORM path it short-cuts.

A plain key's request is authenticated and logged by one statement, which writes the same row the ORM
path writes; every case the statement does not decide (unknown or revoked key, limits, allow-list by
canonical name, continuing a conversation, a refused body) behaves as before. The SQL is PostgreSQL's
(data-modifying CTEs, jsonb), so these skip on SQLite, where the ORM path is the only one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from gateway.api.chat_completions import DOOR
from gateway.chat.accept import _authenticate_and_accept, new_request_id
from gateway.chat.turn import Turn
from gateway.choices import ConversationState, Outcome
from gateway.db.accept_sql import api_key_accept
from gateway.models import ApiKey, Conversation, RequestLog
from gateway.openai.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimitExceeded,
)
from gateway.records.callers import caller_for_key
from gateway.records.keys import api_key_hash_of
from gateway.records.logs import LogStart, request_log_accept
from tests.factories import make_account, make_api_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement accept is PostgreSQL SQL"),
]

FAST = "WITH k AS"  # how the one statement begins


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement sent to the database inside the block (BEGIN/COMMIT, savepoints too)."""
    seen: list[str] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def chat_for(model: str = "kimi", **extra: Any) -> Turn:
    turn, _ = DOOR.parse({"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra})
    return turn


def start_for(chat: Turn | None, **overrides: Any) -> LogStart:
    fields: dict[str, Any] = {
        "request_id": new_request_id(),
        "path": "/v1/chat/completions",
        "model": chat.model.requested if chat else "",
        "flags": tuple(chat.model.flags) if chat else (),
        "stream": chat.stream if chat else False,
        "client_ip": "127.0.0.1",
        "user": (chat.user or "") if chat else "",
        "prompt_chars": 11,
        "prompt_preview": "hello there",
    }
    return LogStart(**{**fields, **overrides})


def row_of(log_id: int) -> dict[str, Any]:
    row = model_to_dict(RequestLog.objects.get(pk=log_id))
    del row["id"], row["request_id"]
    return row


def accept(raw: str, chat: Turn | None, start: LogStart, parse_error: GatewayError | None = None) -> Any:
    return _authenticate_and_accept(f"Bearer {raw}", start, chat, parse_error)


# --- The one statement ---------------------------------------------------------------------------------


def test_a_plain_key_is_authenticated_and_logged_in_one_statement() -> None:
    key, raw = make_api_key()
    chat = chat_for()
    start = start_for(chat)

    with statements() as seen:
        caller, got, log_id, continued = accept(raw, chat, start)

    assert len(seen) == 1 and seen[0].startswith(FAST), seen
    assert continued is None
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.last_used_at is not None  # first use: written
    assert [getattr(got, f.attname) for f in ApiKey._meta.concrete_fields] == [
        getattr(stored, f.attname) for f in ApiKey._meta.concrete_fields
    ]
    assert got.allowed_models == [] and got.pk == key.pk
    assert got._state.adding is False and got._state.db == "default"
    assert caller == caller_for_key(stored)[0]
    log = RequestLog.objects.get(pk=log_id)
    assert (log.request_id, log.api_key_id, log.outcome, log.created_at) == (
        start.request_id,
        key.pk,
        Outcome.PENDING,
        stored.last_used_at,
    )


@pytest.mark.parametrize("previews", [False, True])
@pytest.mark.parametrize(
    "model, body, overrides",
    [
        ("kimi", {}, {}),
        ("kimi-search-thinking", {"stream": True, "user": "u" * 300}, {"client_ip": "::1"}),
        ("gpt-4o", {"user": "alice"}, {"client_ip": None, "prompt_preview": "p" * 500, "prompt_chars": 500}),
    ],
)
def test_it_writes_the_row_the_orm_path_writes(
    settings: Any, previews: bool, model: str, body: dict[str, Any], overrides: dict[str, Any]
) -> None:
    settings.KIMIPROXY_LOG_PREVIEWS = previews
    key, raw = make_api_key(allowed_models=[model, "kimi-other"] if model != "kimi" else None)
    chat = chat_for(model, **body)
    now = timezone.now()
    start = start_for(chat, **overrides)
    fast = api_key_accept(key_hash=api_key_hash_of(raw=raw) or "", start=start, model=model, now=now)
    assert fast is not None and fast.key is not None and fast.log_id is not None
    orm_id = request_log_accept(caller=caller_for_key(fast.key)[0], start=start_for(chat, **overrides), now=now)

    assert row_of(fast.log_id) == row_of(orm_id)
    assert row_of(fast.log_id)["api_key"] == key.pk and row_of(fast.log_id)["passthrough_hash"] == ""
    if chat.model.flags:
        assert row_of(fast.log_id)["flags"] == list(chat.model.flags)


def test_it_writes_last_used_at_at_most_once_a_minute() -> None:
    key, raw = make_api_key()
    recent = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)

    _, got, _, _ = accept(raw, chat_for(), start_for(chat_for()))
    assert got.last_used_at == recent and ApiKey.objects.get(pk=key.pk).last_used_at == recent

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    with statements() as seen:
        _, got, log_id, _ = accept(raw, chat_for(), start_for(chat_for()))
    assert len(seen) == 1
    written = ApiKey.objects.get(pk=key.pk).last_used_at
    assert written == got.last_used_at == RequestLog.objects.get(pk=log_id).created_at


def test_a_value_too_long_for_its_column_is_left_to_the_orm_path() -> None:
    _, raw = make_api_key()
    start = start_for(chat_for(), model="m" * 101)
    with statements() as seen:
        assert (
            api_key_accept(key_hash=api_key_hash_of(raw=raw) or "", start=start, model="kimi", now=timezone.now())
            is None
        )
    assert seen == []


# --- Refusals and the ORM path ---------------------------------------------------------------------------


@pytest.mark.parametrize("revoked", [True, False])
def test_a_revoked_or_unknown_key_is_refused_with_401_and_a_final_log_row(revoked: bool) -> None:
    _, raw = make_api_key(revoked=revoked)
    if not revoked:
        raw = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    start = start_for(chat_for())

    with statements() as seen, pytest.raises(AuthenticationFailed) as refused:
        accept(raw, chat_for(), start)

    assert (refused.value.status, refused.value.message) == (401, "Invalid API key.")
    assert seen[0].startswith(FAST) and len(seen) == 2  # the lookup, then the reject row
    log = RequestLog.objects.get(request_id=start.request_id)
    assert (log.api_key_id, log.status_code, log.outcome, log.error_code, log.finished_at is not None) == (
        None,
        401,
        Outcome.CLIENT_ERROR,
        "invalid_api_key",
        True,
    )


def test_a_key_with_a_rate_limit_takes_the_orm_path_and_is_limited() -> None:
    key, raw = make_api_key(rpm=1)
    first = start_for(chat_for())

    with statements() as seen:
        caller, got, log_id, _ = accept(raw, chat_for(), first)
    assert seen[0].startswith(FAST) and not any(s.startswith(FAST) for s in seen[1:])
    assert not any("gateway_apikey" in s and "key_hash" in s for s in seen[1:])  # not authenticated twice
    assert any("FOR UPDATE" in s for s in seen)  # the limit is counted under the key's row lock
    assert (caller.rpm_limit, got.rpm_limit) == (1, 1)
    assert RequestLog.objects.filter(api_key_id=key.pk).count() == 1
    assert RequestLog.objects.get(pk=log_id).request_id == first.request_id

    second = start_for(chat_for())
    with pytest.raises(RateLimitExceeded):
        accept(raw, chat_for(), second)
    assert RequestLog.objects.get(request_id=second.request_id).outcome == Outcome.RATE_LIMITED


def test_a_key_with_a_concurrency_limit_takes_the_orm_path_and_is_limited() -> None:
    _, raw = make_api_key(max_concurrent=1)
    accept(raw, chat_for(), start_for(chat_for()))  # still pending
    with pytest.raises(RateLimitExceeded, match="concurrent"):
        accept(raw, chat_for(), start_for(chat_for()))


def test_an_allow_list_matched_by_canonical_name_takes_the_orm_path() -> None:
    key, raw = make_api_key(allowed_models=["kimi-search-thinking"])
    chat = chat_for("kimi-thinking-search")  # the same model, named the other way round
    start = start_for(chat)

    with statements() as seen:
        _, _, log_id, _ = accept(raw, chat, start)

    assert seen[0].startswith(FAST) and len(seen) == 2  # the lookup (no row), then the ORM's INSERT
    assert seen[1].startswith('INSERT INTO "gateway_requestlog"')
    log = RequestLog.objects.get(pk=log_id)
    assert (log.request_id, log.api_key_id, log.model, log.outcome) == (
        start.request_id,
        key.pk,
        "kimi-thinking-search",
        Outcome.PENDING,
    )


def test_a_model_outside_the_allow_list_is_refused_with_403_and_a_final_log_row() -> None:
    key, raw = make_api_key(allowed_models=["kimi-search"])
    chat = chat_for("kimi")
    start = start_for(chat)

    with pytest.raises(PermissionDenied) as refused:
        accept(raw, chat, start)

    assert refused.value.code == "model_not_allowed"
    log = RequestLog.objects.get(request_id=start.request_id)
    assert (log.api_key_id, log.status_code, log.error_code) == (key.pk, 403, "model_not_allowed")
    assert RequestLog.objects.count() == 1


def test_continuing_a_conversation_takes_the_orm_path() -> None:
    key, raw = make_api_key()
    now = timezone.now()
    kept = Conversation.objects.create(
        account=make_account(),
        chat_id="chat-kept-1",
        state=ConversationState.KEPT,
        kept=True,
        api_key=key,
        owner_hash=f"key:{key.pk}",
        created_at=now,
        last_used_at=now,
    )
    chat = chat_for(conversation_id="chat-kept-1")
    start = start_for(chat)

    with statements() as seen:
        _, _, log_id, continued = accept(raw, chat, start)

    assert not any(s.startswith(FAST) for s in seen)
    assert continued is not None and continued.conversation_id == kept.pk
    assert RequestLog.objects.get(pk=log_id).request_id == start.request_id

    with pytest.raises(NotFound):
        accept(raw, chat_for(conversation_id="chat-unknown"), start_for(chat))


def test_a_refused_body_takes_the_orm_path_and_logs_the_key() -> None:
    key, raw = make_api_key()
    start = start_for(None)
    error = InvalidRequest("messages is required.", param="messages")

    with statements() as seen, pytest.raises(InvalidRequest):
        accept(raw, None, start, error)

    assert not any(s.startswith(FAST) for s in seen)
    log = RequestLog.objects.get(request_id=start.request_id)
    assert (log.api_key_id, log.status_code) == (key.pk, 400)
