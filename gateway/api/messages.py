"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API (Claude Code).

Two doors on the turn pipeline (gateway/chat/door.py). The Messages door parses the body
(gateway/anthropic/request.py) into the neutral turn, answers in Anthropic's events or body
(gateway/anthropic/sinks.py) and shapes Anthropic's errors; ``max_tokens`` <= 1 is a probe the pipeline
answers locally when the key allows it. The count_tokens door answers every request locally
(``Turn.local_answer``): no account, no upstream call, logged as ``local``.

Credentials: ``x-api-key: <key>`` (what Anthropic's SDKs send) or ``Authorization: Bearer <key>`` (Claude
Code with ``ANTHROPIC_AUTH_TOKEN``). ``anthropic-version`` and ``anthropic-beta`` are accepted whatever
they say; ``?beta=true`` (the SDK's beta client) is the same endpoint.
"""

from __future__ import annotations

import contextvars
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.anthropic.content import ContentLimits
from gateway.anthropic.errors import anthropic_error_body, anthropic_status
from gateway.anthropic.request import MessagesRequest, parse_messages_request
from gateway.anthropic.sinks import CountTokensSink, MessagesSink
from gateway.anthropic.thinking import signing_key
from gateway.chat.accept import new_request_id
from gateway.chat.door import FrontDoor, serve
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody
from gateway.chat.turn import Job, Turn
from gateway.openai.errors import GatewayError, NotFound
from gateway.openai.usage import estimate_tokens
from gateway.tools.spec import new_nonce

log = logging.getLogger(__name__)
# The prompt's estimated tokens for this request's error message ("prompt is too long: N tokens > M"):
# set when its sink is made, read by error_response, in the same task (serve).
_PROMPT_TOKENS: contextvars.ContextVar[int] = contextvars.ContextVar("anthropic_prompt_tokens", default=0)


def _parse(body: object, *, counting: bool) -> MessagesRequest:
    return parse_messages_request(
        body,
        limits=ContentLimits(max_parts=settings.KIMIPROXY_MAX_PARTS, max_file_bytes=settings.KIMIPROXY_FILE_MAX_BYTES),
        max_messages=settings.KIMIPROXY_MAX_MESSAGES,
        max_files=settings.KIMIPROXY_MAX_FILES,
        counting=counting,
    )


def _turn(request: MessagesRequest, *, local_answer: str | None = None) -> Turn:
    return Turn(
        model=request.model,
        messages=request.messages,
        files=request.files,
        stream=request.stream,
        user=request.user,
        reasoning_effort=request.reasoning_effort,
        tools=request.tools,
        tool_nonce=new_nonce() if request.tools else "",
        local_answer=local_answer,
        probe=request.probe,
    )


class AnthropicDoor:
    """What both doors share: where the key is, and Anthropic's error shape."""

    def authorization(self, request: HttpRequest) -> str:
        key = request.headers.get("x-api-key", "").strip()
        return f"Bearer {key}" if key else request.headers.get("Authorization", "")

    def error_response(self, error: GatewayError, *, request_id: str) -> HttpResponseBase:
        body = anthropic_error_body(error, request_id=request_id, prompt_tokens=_PROMPT_TOKENS.get())
        response = JsonResponse(body, status=anthropic_status(error))
        for name, value in error.headers().items():  # retry-after
            response[name] = value
        response["request-id"] = response["x-request-id"] = request_id
        return response


class MessagesDoor(AnthropicDoor, FrontDoor[MessagesRequest, MessagesSink]):
    name = "messages"  # native multi-turn states belong to one door

    def parse(self, body: object) -> tuple[Turn, MessagesRequest]:
        request = _parse(body, counting=False)
        if request.ignored:
            log.debug("messages request: accepted and ignored %s", ", ".join(request.ignored))
        return _turn(request), request

    def sink(self, job: Job, parsed: MessagesRequest) -> MessagesSink:
        _PROMPT_TOKENS.set(estimate_tokens(job.prompt_text))
        return MessagesSink(
            request_id=job.request_id,
            request=parsed,
            prompt_text=job.prompt_text,
            tool_nonce=job.turn.tool_nonce,
            signing_key=signing_key(settings.SECRET_KEY),
            probe=job.answered_locally,
        )

    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["request-id"] = response["x-request-id"] = job.request_id
        return response

    def collected_response(self, sink: MessagesSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = JsonResponse(sink.message(), json_dumps_params={"ensure_ascii": False})
        response["request-id"] = response["x-request-id"] = job.request_id
        return response


class CountTokensDoor(AnthropicDoor, FrontDoor[MessagesRequest, CountTokensSink]):
    name = "count_tokens"

    def parse(self, body: object) -> tuple[Turn, MessagesRequest]:
        request = _parse(body, counting=True)
        return _turn(request, local_answer=""), request

    def sink(self, job: Job, parsed: MessagesRequest) -> CountTokensSink:
        return CountTokensSink(prompt_text=job.prompt_text)

    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        raise AssertionError("count_tokens never streams")

    def collected_response(self, sink: CountTokensSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = JsonResponse(sink.body())
        response["request-id"] = response["x-request-id"] = job.request_id
        return response


MESSAGES = MessagesDoor()
COUNT_TOKENS = CountTokensDoor()


@csrf_exempt
@require_http_methods(["POST"])
async def messages(request: HttpRequest) -> HttpResponseBase:
    return await serve(request, MESSAGES)


@csrf_exempt
@require_http_methods(["POST"])
async def count_tokens(request: HttpRequest) -> HttpResponseBase:
    return await serve(request, COUNT_TOKENS)


@csrf_exempt
async def messages_not_found(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Other paths under /v1/messages/ (batches, ...): Anthropic's 404 shape. Claude Code reads a 404 as
    "this model does not exist", so only an unknown path gets one, never a model name."""
    return MESSAGES.error_response(NotFound(f"Unknown path {request.path}"), request_id=new_request_id())
