"""Accept: an HTTP request -> a frozen ``Job``: authenticate, validate, log on accept, fetch files.

Everything here happens before an account is reserved. A refusal raises ``GatewayError`` and still
leaves one final request-log row (``request_log_reject``, or the final write when the refusal comes
after the row was created, e.g. a file URL that cannot be fetched), so every request is accounted for.
The door's ``parse`` turns the decoded body into the neutral ``Turn``; the rest is the same for every door.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from gateway.chat.finish import Final, finish_spawn
from gateway.chat.native import native_claim, native_enabled, native_hint
from gateway.chat.prompt import prompt_text
from gateway.chat.settle import ending_client_closed, ending_for_error
from gateway.chat.turn import Job, Turn
from gateway.db.accept_sql import FastAccept, api_key_accept, api_key_accept_async, fast_accept_supported
from gateway.db.threads import db_call
from gateway.kimi.base import FileBlob, FileRejected
from gateway.kimi.uploads import blob_from_url
from gateway.models import ApiKey
from gateway.openai.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
)
from gateway.openai.messages import Attachment
from gateway.openai.request import parse_json_body
from gateway.records.callers import Caller, bearer_token, caller_authenticate, caller_for_key
from gateway.records.conversations import ContinuedConversation, conversation_for_continue, conversation_release_unused
from gateway.records.keys import api_key_hash_of, api_key_model_allowed
from gateway.records.logs import LogStart, request_log_accept, request_log_reject
from gateway.records.responses import stored_response_continue

Parsed = TypeVar("Parsed")


def new_request_id() -> str:
    return uuid.uuid4().hex


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


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


def _fast_accept_key_hash(authorization: str, turn: Turn | None, parse_error: GatewayError | None) -> str | None:
    """The key's hash when the one-statement accept (gateway/db/accept_sql.py) can apply: PostgreSQL, a
    well-formed gateway key, a valid request that continues no conversation. None: the ORM path."""
    if parse_error is not None or turn is None or turn.continue_chat or turn.continue_stored:
        return None
    if not fast_accept_supported():
        return None
    try:
        return api_key_hash_of(raw=bearer_token(authorization))
    except AuthenticationFailed:
        return None  # the ORM path refuses it, with its log row


def _authenticate_and_accept(
    authorization: str,
    start: LogStart,
    turn: Turn | None,
    parse_error: GatewayError | None,
    fast: FastAccept | None = None,
) -> tuple[Caller, ApiKey | None, int, ContinuedConversation | None]:
    """Sync part of accept (one worker-thread hop): auth, allow-list, continue-claim, log row.
    ``fast``: what the one statement gave when it already ran on the event loop."""
    if fast is None:  # (also when a value was too long for it: that attempt stops again before the database)
        key_hash = _fast_accept_key_hash(authorization, turn, parse_error)
        if key_hash is not None:
            assert turn is not None
            fast = api_key_accept(key_hash=key_hash, start=start, model=turn.model.requested, now=timezone.now())
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
        assert turn is not None
        if key is not None and not api_key_model_allowed(key=key, model=turn.model.requested):
            raise PermissionDenied(
                f"This key may not use model {turn.model.requested!r}.", param="model", code="model_not_allowed"
            )
        continued = None
        if turn.continue_chat:
            continued = conversation_for_continue(chat_id=turn.continue_chat, owners=caller.owners)
        elif turn.continue_stored:
            continued = stored_response_continue(response_id=turn.continue_stored, owners=caller.owners)
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
    authorization: str, start: LogStart, turn: Turn | None, parse_error: GatewayError | None
) -> tuple[Caller, ApiKey | None, int, ContinuedConversation | None]:
    """The accept step: on PostgreSQL, in the common case, one statement (gateway/db/accept_sql.py; where
    it runs is gateway/db/run.py's choice); what it leaves undecided, and everything on SQLite, through
    the ORM in a worker thread."""
    key_hash = _fast_accept_key_hash(authorization, turn, parse_error)
    if key_hash is None:
        return await db_call(_authenticate_and_accept, authorization, start, turn, parse_error)
    assert turn is not None
    fast = await api_key_accept_async(key_hash=key_hash, start=start, model=turn.model.requested, now=timezone.now())
    if fast is not None and fast.log_id is not None:
        caller, key = caller_for_key(fast.key)
        return caller, key, fast.log_id, None
    return await db_call(_authenticate_and_accept, authorization, start, turn, parse_error, fast)


def _log_flags(turn: Turn) -> tuple[str, ...]:
    effort = (f"effort:{turn.reasoning_effort}",) if turn.reasoning_effort else ()
    return (*turn.model.flags, *effort, *turn.log_flags)


async def accept(
    request: HttpRequest,
    *,
    parse: Callable[[object], tuple[Turn, Parsed]],
    request_id: str,
    authorization: str | None = None,
    door: str = "",
) -> tuple[Job, Parsed]:
    """The accepted request as a ``Job``, with the door's own parsed request beside it.

    ``authorization``: the credential as an ``Authorization`` header value, when the door reads it from
    elsewhere too (``x-api-key`` on the Messages door); by default the request's own header."""
    started = time.monotonic()
    turn: Turn | None = None
    parsed: Parsed | None = None
    parse_error: GatewayError | None = None
    try:
        turn, parsed = parse(_read_body(request))
    except GatewayError as error:
        parse_error = error
    prompt = prompt_text(turn) if turn else ""
    if turn is not None and nothing_to_answer(turn, prompt):
        parse_error = InvalidRequest(
            "There is nothing to answer: the messages hold no text and no file.", param="messages", code="empty_prompt"
        )
    start = LogStart(
        request_id=request_id,
        path=request.path,
        model=turn.model.requested if turn else "",
        flags=_log_flags(turn) if turn else (),
        stream=turn.stream if turn else False,
        client_ip=client_ip(request),
        user=turn.user if turn else "",
        prompt_chars=len(prompt),
        prompt_preview=prompt,
    )
    if authorization is None:
        authorization = request.headers.get("Authorization", "")
    caller, key, log_id, continued = await _accept_step(authorization, start, turn, parse_error)
    assert turn is not None
    job = Job(
        request_id=request_id,
        log_id=log_id,
        caller=caller,
        api_key=key,
        turn=turn,
        prompt_text=prompt,
        started=started,
        continued=continued,
        flags=start.flags,
        door=door,
        native_on=native_enabled(key) and not turn.continue_chat and not turn.continue_stored,
    )
    if job.answered_locally:  # count_tokens, a probe: nothing reaches Kimi, no kept chat to claim or extend
        job = dataclasses.replace(job, native_on=False)
    if job.native_on:
        job = await _native_match(dataclasses.replace(job, native_hint=native_hint(request, turn)))
    return await _with_files(job), cast(Parsed, parsed)


def nothing_to_answer(turn: Turn, prompt: str) -> bool:
    """A new chat whose prompt is blank and carries no file: Kimi refuses it (kimi-web-protocol.md: a
    message needs content), so it is refused here without spending an upstream call."""
    answered_here = turn.local_answer is not None or turn.probe  # the door answers these itself
    return not turn.continue_chat and not answered_here and not turn.files and not prompt.strip()


async def _native_match(job: Job) -> Job:
    """Native multi-turn (gateway/chat/native.py): continue the kept chat this history extends, if any."""
    match = await db_call(native_claim, turn=job.turn, door=job.door, owners=job.caller.owners, hint=job.native_hint)
    if isinstance(match, str):
        return dataclasses.replace(job, native_flag=f"flattened:{match}")
    turn = job.turn
    if turn.tools is not None and match.nonce:  # the chat's tool instructions name its first nonce
        turn = dataclasses.replace(turn, tool_nonce=match.nonce)
    return dataclasses.replace(
        job, turn=turn, prompt_text=prompt_text(turn), continued=match.conversation, native=match, native_flag="native"
    )


async def _with_files(job: Job) -> Job:
    """The job with its files as bytes; a refused file URL (or the client leaving) finishes the request."""
    if not job.turn.files or job.answered_locally:
        return job
    try:
        return dataclasses.replace(job, blobs=tuple(await files_fetch(job.turn.files)))
    except GatewayError as error:
        finish_spawn(job, Final(ending=ending_for_error(error)))
        raise
    except asyncio.CancelledError:
        finish_spawn(job, Final(ending=ending_client_closed()))
        raise


async def files_fetch(files: Sequence[Attachment]) -> list[FileBlob]:
    """The answered message's files as bytes (data: URLs are already decoded by the parser)."""
    blobs: list[FileBlob] = []
    for attachment in files:
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
