"""Turning an HTTP request into a ``Plan``: authenticate, validate, log on accept, fetch files.

Everything here happens before an account is reserved. A refusal raises ``GatewayError`` and still
leaves one final request-log row (``request_log_reject``), so every request is accounted for.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from gateway.accept_sql import FastAccept, api_key_accept, api_key_accept_async, fast_accept_supported
from gateway.attempts import Plan
from gateway.callers import Caller, bearer_token, caller_authenticate, caller_for_key
from gateway.conversations import ContinuedConversation, conversation_for_continue, conversation_release_unused
from gateway.dbasync import async_db_enabled
from gateway.dbcall import db_call
from gateway.keys import api_key_hash_of, api_key_model_allowed
from gateway.kimi.base import FileBlob, FileRejected
from gateway.kimi.uploads import blob_from_url
from gateway.logs import LogStart, request_log_accept, request_log_reject
from gateway.models import ApiKey
from gateway.openai.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
)
from gateway.openai.flatten import flatten_history, last_user_text
from gateway.openai.request import ChatRequest, parse_chat_request, parse_json_body


def new_request_id() -> str:
    return uuid.uuid4().hex


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class Accepted:
    """What the view needs after accept: the plan and the parsed request."""

    def __init__(self, plan: Plan, chat: ChatRequest, api_key: ApiKey | None) -> None:
        self.plan, self.chat, self.api_key = plan, chat, api_key


def _read_body(request: HttpRequest) -> Any:
    limit = settings.KIMIPROXY_MAX_BODY_BYTES
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; this gateway accepts at most {limit}.")
    # A chunked body has no Content-Length to check: count what is read, and read no more than that.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes, the most this gateway accepts.")
    return parse_json_body(body)


def _parse(body: Any) -> ChatRequest:
    return parse_chat_request(
        body,
        max_messages=settings.KIMIPROXY_MAX_MESSAGES,
        max_parts=settings.KIMIPROXY_MAX_PARTS,
        max_files=settings.KIMIPROXY_MAX_FILES,
        max_file_bytes=settings.KIMIPROXY_FILE_MAX_BYTES,
    )


def _fast_accept_key_hash(authorization: str, chat: ChatRequest | None, parse_error: GatewayError | None) -> str | None:
    """The key's hash when the one-statement accept (gateway/accept_sql.py) can apply: PostgreSQL, a
    well-formed gateway key, a valid request that continues no conversation. None: the ORM path."""
    if parse_error is not None or chat is None or chat.continue_conversation or not fast_accept_supported():
        return None
    try:
        return api_key_hash_of(raw=bearer_token(authorization))
    except AuthenticationFailed:
        return None  # the ORM path refuses it, with its log row


def _authenticate_and_accept(
    authorization: str,
    start: LogStart,
    chat: ChatRequest | None,
    parse_error: GatewayError | None,
    fast: FastAccept | None = None,
) -> tuple[Caller, ApiKey | None, int, ContinuedConversation | None]:
    """Sync part of accept (one worker-thread hop): auth, allow-list, continue-claim, log row.
    ``fast``: what the one statement gave when it already ran on the event loop."""
    if fast is None:  # (also when a value was too long for it: that attempt stops again before the database)
        key_hash = _fast_accept_key_hash(authorization, chat, parse_error)
        if key_hash is not None:
            assert chat is not None
            fast = api_key_accept(key_hash=key_hash, start=start, model=chat.model.requested, now=timezone.now())
    if fast is not None and fast.log_id is not None:
        fast_caller, fast_key = caller_for_key(fast.key)
        return fast_caller, fast_key, fast.log_id, None
    try:
        # When the one statement ran but wrote no row, its key is authenticated already (and its
        # last_used_at written): the ORM path goes on from there.
        caller, key = caller_for_key(fast.key) if fast is not None else caller_authenticate(authorization=authorization)
    except GatewayError as error:
        request_log_reject(
            start=start, api_key_id=None, status_code=error.status, error_code=error.code or "", message=error.message
        )
        raise
    try:
        if parse_error is not None:
            raise parse_error  # refused, but only now that we know who is calling, for the log row
        assert chat is not None
        if key is not None and not api_key_model_allowed(key=key, model=chat.model.requested):
            raise PermissionDenied(
                f"This key may not use model {chat.model.requested!r}.", param="model", code="model_not_allowed"
            )
        continued = None
        if chat.continue_conversation:
            continued = conversation_for_continue(chat_id=chat.continue_conversation, owners=caller.owners)
    except GatewayError as error:
        request_log_reject(
            start=start,
            api_key_id=caller.api_key_id,
            status_code=error.status,
            error_code=error.code or "",
            message=error.message,
        )
        raise
    try:
        log_id = request_log_accept(caller=caller, start=start)
    except GatewayError:
        if continued is not None:
            conversation_release_unused(conversation_id=continued.conversation_id)
        raise
    return caller, key, log_id, continued


async def _accept_step(
    authorization: str, start: LogStart, chat: ChatRequest | None, parse_error: GatewayError | None
) -> tuple[Caller, ApiKey | None, int, ContinuedConversation | None]:
    """The accept step: in the common case one statement on the event loop (gateway/dbasync.py); what
    it leaves undecided, or everything off PostgreSQL's serving loop, in a worker thread."""
    key_hash = _fast_accept_key_hash(authorization, chat, parse_error) if async_db_enabled() else None
    if key_hash is None:
        return await db_call(_authenticate_and_accept, authorization, start, chat, parse_error)
    assert chat is not None
    fast = await api_key_accept_async(key_hash=key_hash, start=start, model=chat.model.requested, now=timezone.now())
    if fast is not None and fast.log_id is not None:
        caller, key = caller_for_key(fast.key)
        return caller, key, fast.log_id, None
    return await db_call(_authenticate_and_accept, authorization, start, chat, parse_error, fast)


def _log_flags(chat: ChatRequest) -> tuple[str, ...]:
    effort = (f"effort:{chat.reasoning_effort}",) if chat.reasoning_effort else ()
    return (*chat.model.flags, *effort)


async def request_accept(request: HttpRequest, *, request_id: str) -> Accepted:
    started = time.monotonic()
    chat: ChatRequest | None = None
    parse_error: GatewayError | None = None
    try:
        chat = _parse(_read_body(request))
    except GatewayError as error:
        parse_error = error
    prompt = flatten_history(chat.messages) if chat else ""
    start = LogStart(
        request_id=request_id,
        path=request.path,
        model=chat.model.requested if chat else "",
        flags=_log_flags(chat) if chat else (),
        stream=chat.stream if chat else False,
        client_ip=client_ip(request),
        user=(chat.user or "") if chat else "",
        prompt_chars=len(prompt),
        prompt_preview=prompt,
    )
    authorization = request.headers.get("Authorization", "")
    caller, key, log_id, continued = await _accept_step(authorization, start, chat, parse_error)
    assert chat is not None
    text = last_user_text(chat.messages) if continued else prompt
    plan = Plan(
        request_id=request_id,
        log_id=log_id,
        caller=caller,
        turn=chat.model.turn_request(text=text, reasoning_effort=chat.reasoning_effort),
        blobs=[],
        keep=chat.keep_conversation,
        continued=continued,
        started=started,
        prompt_text=prompt,
        flags=start.flags,
    )
    return Accepted(plan, chat, key)


async def files_fetch(chat: ChatRequest) -> list[FileBlob]:
    """The last user message's files as bytes (data: URLs are already decoded by the parser)."""
    blobs: list[FileBlob] = []
    for attachment in chat.files:
        if attachment.blob is not None:
            blobs.append(attachment.blob)
            continue
        assert attachment.url is not None
        try:
            blobs.append(await blob_from_url(attachment.url))
        except FileRejected as exc:  # blob_from_url wraps FetchRefused / FetchFailed (SSRF guard, size, time)
            raise InvalidRequest(
                f"The file URL was refused: {exc.message}", param=attachment.param, code="file_url_refused"
            ) from None
    return blobs
