"""Thin API views: authenticate -> validate -> call a service -> shape the response.

``/v1/chat/completions`` is a plain async view (DRF's APIView is synchronous); ``/v1/models`` and
``/token/check`` are small DRF/async views. Every error leaves as OpenAI-shaped JSON.
"""

from __future__ import annotations

import asyncio
import logging

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.chat.accept import files_fetch, new_request_id, request_accept
from gateway.chat.finish import Finisher, ending_client_closed, ending_for_error
from gateway.chat.reply import reply_collect, stream_open
from gateway.chat.sse import SseBody
from gateway.kimi.base import KimiError
from gateway.openai.errors import GatewayError, InvalidRequest

log = logging.getLogger(__name__)


def error_response(error: GatewayError, *, request_id: str) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    response["x-request-id"] = request_id
    return response


@csrf_exempt
@require_http_methods(["POST"])
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    request_id = new_request_id()
    try:
        accepted = await request_accept(request, request_id=request_id)
    except GatewayError as error:
        return error_response(error, request_id=request_id)
    finisher = Finisher(accepted.plan)
    try:
        accepted.plan.blobs = await files_fetch(accepted.chat)
        if accepted.chat.stream:
            body, conversation_id = await stream_open(accepted, finisher)
            return sse_response(body, request_id=request_id, conversation_id=conversation_id)
        completion = await reply_collect(accepted, finisher)
    except GatewayError as error:
        cause = error.__cause__ if isinstance(error.__cause__, KimiError) else None
        finisher.finish(ending_for_error(error, cause=cause))
        return error_response(error, request_id=request_id)
    except asyncio.CancelledError:
        finisher.finish(ending_client_closed())  # the client went away
        raise
    except Exception:
        # A bug of ours: the request still gets its final log row, and the client a JSON error.
        log.exception("request %s failed", request_id)
        internal = GatewayError("Internal error in the gateway.")
        finisher.finish(ending_for_error(internal))
        return error_response(internal, request_id=request_id)
    finisher.finish(finisher.success_ending())
    response = JsonResponse(completion, json_dumps_params={"ensure_ascii": False})
    response["x-request-id"] = request_id
    return response


def sse_response(body: SseBody, *, request_id: str, conversation_id: str | None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["x-request-id"] = request_id
    if conversation_id:
        response["x-conversation-id"] = conversation_id
    return response


@csrf_exempt
async def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    error = InvalidRequest(f"Unknown path {request.path}", code="not_found", status=404)
    return error_response(error, request_id=new_request_id())
