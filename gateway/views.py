"""Thin API views: authenticate -> validate -> call a service -> shape the response.

``/v1/chat/completions`` is a plain async view (DRF's APIView is synchronous); ``/v1/models`` and
``/token/check`` are small DRF/async views. Every error leaves as OpenAI-shaped JSON.
"""

from __future__ import annotations

import json
import logging
import time

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.accept import files_fetch, new_request_id, request_accept
from gateway.completions import Finisher, ending_client_closed, ending_for_error, reply_open, upstream_events
from gateway.kimi.base import Done, KimiError
from gateway.openai.chunks import ReplyAssembler
from gateway.openai.errors import GatewayError, InvalidRequest, gateway_error_from_kimi
from gateway.streaming import SseBody

log = logging.getLogger(__name__)


def error_response(error: GatewayError, *, request_id: str) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    response["x-request-id"] = request_id
    return response


def _assembler(accepted, *, request_id: str) -> ReplyAssembler:  # type: ignore[no-untyped-def]
    chat, plan, key = accepted.chat, accepted.plan, accepted.api_key
    reasoning = chat.reasoning_format or (key.reasoning_format if key else "field")
    continued = plan.continued.chat_id if plan.continued else None
    return ReplyAssembler(
        request_id=request_id,
        model=chat.model.requested,
        created=int(time.time()),
        reasoning_format=reasoning,
        silent=chat.model.silent,
        max_tokens=chat.max_tokens,
        stop=chat.stop,
        include_usage=chat.include_usage,
        prompt_text=plan.prompt_text,
        completion_id=continued,
    )


@csrf_exempt
@require_http_methods(["POST"])
async def chat_completions(request: HttpRequest) -> HttpResponse:
    request_id = new_request_id()
    try:
        accepted = await request_accept(request, request_id=request_id)
    except GatewayError as error:
        return error_response(error, request_id=request_id)
    finisher = Finisher(accepted.plan)
    try:
        accepted.plan.blobs = await files_fetch(accepted.chat)
        attempt, buffered, finisher.attempts = await reply_open(accepted.plan)
        finisher.attempt = attempt
    except GatewayError as error:
        finisher.finish(ending_for_error(error))
        return error_response(error, request_id=request_id)
    except BaseException:
        finisher.finish(ending_client_closed())
        raise
    assembler = _assembler(accepted, request_id=request_id)
    events = upstream_events(attempt, buffered)
    if accepted.chat.stream:
        return _stream_response(
            finisher,
            assembler,
            events,
            request_id=request_id,
            conversation_id=attempt.chat_id if accepted.plan.keep else None,
        )
    return await _collect_response(
        finisher, assembler, events, request_id=request_id, keep=accepted.plan.keep, chat_id=attempt.chat_id
    )


def _stream_response(finisher, assembler, events, *, request_id, conversation_id):  # type: ignore[no-untyped-def]
    body = SseBody(finisher=finisher, assembler=assembler, first_chunks=[], events=events)
    if conversation_id:
        assembler.id = conversation_id
        assembler.conversation_id = conversation_id
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["x-request-id"] = request_id
    if conversation_id:
        response["x-conversation-id"] = conversation_id
    return response


async def _collect_response(finisher, assembler, events, *, request_id, keep, chat_id):  # type: ignore[no-untyped-def]
    try:
        async for event in events:
            chunks = assembler.feed(event)
            if chunks and finisher.first_token_at is None:
                finisher.first_token_at = time.monotonic()
            if isinstance(event, Done):
                finisher.parent_message_id = event.message_id or ""
            if assembler.finished:
                break
        body = assembler.completion()
    except KimiError as exc:
        error = gateway_error_from_kimi(exc)
        finisher.record_stats(assembler)
        finisher.finish(ending_for_error(error, cause=exc))
        return error_response(error, request_id=request_id)
    except BaseException:
        finisher.record_stats(assembler)
        finisher.finish(ending_client_closed())
        raise
    finisher.record_stats(assembler)
    finisher.finish(finisher.success_ending())
    if keep and chat_id:
        body["id"] = chat_id
        body["conversation_id"] = chat_id
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["x-request-id"] = request_id
    return response


@csrf_exempt
async def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    error = InvalidRequest(f"Unknown path {request.path}", code="not_found", status=404)
    return error_response(error, request_id=new_request_id())


def json_body(request: HttpRequest) -> object:
    try:
        return json.loads(request.body or b"{}")
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
