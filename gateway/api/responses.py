"""``POST /v1/responses``, ``GET`` / ``DELETE /v1/responses/{id}``: OpenAI's Responses API (Codex).

The door parses the body into the neutral turn (gateway/responses/request.py), answers through the
Responses sink (gateway/responses/sink.py: the event stream or one body) and shapes OpenAI's errors
with the codes Responses clients parse (gateway/responses/errors.py). Everything else is the
pipeline's (gateway/chat/door.py).

State: ``store`` (default true) keeps the upstream chat and records the response object
(records/responses.py) before the client sees its end (the last event, or the body), so a ``GET`` or a
``previous_response_id`` right after finds it. ``store: false`` keeps nothing (the chat is deleted after
the answer, as for any request). ``previous_response_id`` continues the stored response's chat.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.api.errors import error_response
from gateway.chat.accept import client_ip, new_request_id
from gateway.chat.door import FrontDoor, serve
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody
from gateway.chat.turn import Job, Turn
from gateway.db.threads import db_call
from gateway.openai.errors import GatewayError
from gateway.records.callers import caller_authenticate
from gateway.records.logs import LogStart, request_log_local, request_log_reject
from gateway.records.responses import (
    stored_response_delete,
    stored_response_forget,
    stored_response_get,
    stored_response_save,
)
from gateway.responses.errors import responses_error
from gateway.responses.request import ResponsesRequest, parse_responses_request
from gateway.responses.sink import ResponsesSink
from gateway.responses.stream import new_response_id
from gateway.tools.spec import new_nonce

log = logging.getLogger(__name__)
STORE_ATTRIBUTE = "_kimiproxy_store"  # the collected answer's record, saved by the view before it returns


class ResponsesDoor(FrontDoor[ResponsesRequest, ResponsesSink]):
    name = "responses"

    def parse(self, body: object) -> tuple[Turn, ResponsesRequest]:
        parsed = parse_responses_request(
            body,
            max_messages=settings.KIMIPROXY_MAX_MESSAGES,
            max_parts=settings.KIMIPROXY_MAX_PARTS,
            max_files=settings.KIMIPROXY_MAX_FILES,
            max_file_bytes=settings.KIMIPROXY_FILE_MAX_BYTES,
        )
        tools = parsed.tools.tools
        turn = Turn(
            model=parsed.model,
            messages=parsed.messages,
            files=parsed.files,
            stream=parsed.stream,
            keep=parsed.store,
            continue_stored=parsed.previous_response_id,
            user=parsed.user or "",
            reasoning_effort=parsed.reasoning_effort,
            tools=tools,
            tool_nonce=new_nonce() if tools else "",
            response_format=parsed.response_format,
            probe=parsed.probe,
            log_flags=_log_flags(parsed),
            session_hint=parsed.prompt_cache_key or "",
        )
        return turn, parsed

    def sink(self, job: Job, parsed: ResponsesRequest) -> ResponsesSink:
        hidden = job.api_key is not None and job.api_key.reasoning_format == "hidden"
        return ResponsesSink(
            request_id=job.request_id,
            response_id=new_response_id(),
            request=parsed,
            prompt_text=job.prompt_text,
            tool_nonce=job.turn.tool_nonce,
            hide_reasoning=hidden,
        )

    def error_response(self, error: GatewayError, *, request_id: str) -> HttpResponseBase:
        return error_response(responses_error(error), request_id=request_id)

    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        content = StoringStream(body, job=job, reply=reply)
        response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["x-request-id"] = job.request_id
        return response

    def collected_response(self, sink: ResponsesSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        body = sink.response()
        response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
        response["x-request-id"] = job.request_id
        setattr(response, STORE_ATTRIBUTE, _record(sink, job=job, reply=reply))
        return response


def _log_flags(parsed: ResponsesRequest) -> tuple[str, ...]:
    """What the log row notes of a Responses request: its state options and what was accepted unused."""
    flags = [] if parsed.store else ["store:false"]
    if parsed.previous_response_id:
        flags.append("previous_response")
    flags += [f"tool_dropped:{name}" for name in parsed.tools.dropped]
    flags += [f"ignored:{name}" for name in parsed.ignored]
    return tuple(flags)


def _record(sink: ResponsesSink, *, job: Job, reply: Reply) -> dict[str, Any] | None:
    """What ``store`` keeps of this answer (None: nothing: not asked, not completed, or no chat)."""
    request = sink.request
    if not request.store or sink.completed is None or not reply.chat_id or reply.attempt is None:
        return None
    return {
        "response_id": sink.response_id,
        "owner_hash": job.caller.owner_hash,
        "api_key_id": job.caller.api_key_id,
        "account_id": reply.attempt.account.pk,
        "chat_id": reply.chat_id,
        "previous_response_id": request.previous_response_id,
        "message_id": sink.message_id,
        "body": sink.completed,
    }


async def _save(record: dict[str, Any] | None, request_id: str) -> None:
    if record is None:
        return
    try:
        await db_call(lambda: stored_response_save(**record))
    except Exception:  # the answer stands; only its later retrieval fails
        log.exception("%s: storing response %s failed", request_id, record["response_id"])


class StoringStream:
    """The stream's body: the pipeline's, with the response stored before its last event leaves."""

    def __init__(self, body: StreamBody, *, job: Job, reply: Reply) -> None:
        self.body, self.job, self.reply = body, job, reply
        self._saved = False

    def close(self) -> None:
        self.body.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        sink = self.body.sink
        assert isinstance(sink, ResponsesSink)
        async for data in self.body:
            if not self._saved and sink.completed is not None:
                self._saved = True
                await _save(_record(sink, job=self.job, reply=self.reply), self.job.request_id)
            yield data


DOOR = ResponsesDoor()


@csrf_exempt
@require_http_methods(["POST"])
async def create_response(request: HttpRequest) -> HttpResponseBase:
    response = await serve(request, DOOR)
    await _save(getattr(response, STORE_ATTRIBUTE, None), response.get("x-request-id", ""))
    return response


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
async def stored_response(request: HttpRequest, response_id: str) -> HttpResponseBase:
    """Read or delete a stored response: answered from the database (no turn), logged as ``local``."""
    request_id = new_request_id()
    start = LogStart(request_id=request_id, path=request.path, client_ip=client_ip(request))
    api_key_id = None
    try:
        caller, _ = await db_call(caller_authenticate, authorization=request.headers.get("Authorization", ""))
        api_key_id = caller.api_key_id
        if request.method == "GET":
            body = await db_call(stored_response_get, response_id=response_id, owners=caller.owners)
            response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
        else:
            conversation_id = await db_call(stored_response_forget, response_id=response_id, owners=caller.owners)
            await stored_response_delete(conversation_id=conversation_id)
            response = JsonResponse({"id": response_id, "object": "response", "deleted": True})
    except GatewayError as error:
        await db_call(
            request_log_reject,
            start=start,
            api_key_id=api_key_id,
            status_code=error.status,
            error_code=error.code or "",
            message=error.message,
        )
        return error_response(error, request_id=request_id)
    flags = (f"stored_response:{(request.method or '').lower()}",)
    await db_call(
        request_log_local,
        request_id=request_id,
        path=request.path,
        client_ip=start.client_ip,
        api_key_id=api_key_id,
        flags=flags,
    )
    response["x-request-id"] = request_id
    return response
