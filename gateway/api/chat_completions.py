"""``POST /v1/chat/completions``: the OpenAI chat completions front door on the turn pipeline.

A plain async view (DRF's APIView is synchronous). The door parses the body into the neutral turn,
chooses the chat completions sink (SSE or one JSON body) and shapes OpenAI's errors; everything else is
the pipeline's (gateway/chat/door.py).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.api.errors import error_response
from gateway.chat.accept import new_request_id
from gateway.chat.door import FrontDoor, serve
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody
from gateway.chat.turn import Job, Turn
from gateway.openai.errors import GatewayError, InvalidRequest
from gateway.openai.request import ChatRequest, parse_chat_request
from gateway.openai.sinks import ChatCompletionSink
from gateway.tools.spec import new_nonce


def sse_response(body: StreamBody, *, request_id: str, conversation_id: str | None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response["x-request-id"] = request_id
    if conversation_id:
        response["x-conversation-id"] = conversation_id
    return response


class ChatCompletionsDoor(FrontDoor[ChatRequest, ChatCompletionSink]):
    name = "chat_completions"

    def parse(self, body: object) -> tuple[Turn, ChatRequest]:
        chat = parse_chat_request(
            body,
            max_messages=settings.KIMIPROXY_MAX_MESSAGES,
            max_parts=settings.KIMIPROXY_MAX_PARTS,
            max_files=settings.KIMIPROXY_MAX_FILES,
            max_file_bytes=settings.KIMIPROXY_FILE_MAX_BYTES,
        )
        turn = Turn(
            model=chat.model,
            messages=chat.messages,
            files=chat.files,
            stream=chat.stream,
            keep=chat.keep_conversation,
            continue_chat=chat.continue_conversation,
            user=chat.user or "",
            reasoning_effort=chat.reasoning_effort,
            tools=chat.tools,
            tool_nonce=new_nonce() if chat.tools else "",
            response_format=chat.response_format,
        )
        return turn, chat

    def sink(self, job: Job, parsed: ChatRequest) -> ChatCompletionSink:
        reasoning = parsed.reasoning_format or (job.api_key.reasoning_format if job.api_key else "field")
        return ChatCompletionSink(
            request_id=job.request_id,
            chat=parsed,
            reasoning_format=reasoning,  # type: ignore[arg-type]
            prompt_text=job.prompt_text,
            keep=job.keep,
            tool_nonce=job.turn.tool_nonce,
        )

    def error_response(self, error: GatewayError, *, request_id: str) -> HttpResponseBase:
        return error_response(error, request_id=request_id)

    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        conversation_id = (reply.chat_id or None) if job.keep else None
        return sse_response(body, request_id=job.request_id, conversation_id=conversation_id)

    def collected_response(self, sink: ChatCompletionSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = JsonResponse(sink.completion(), json_dumps_params={"ensure_ascii": False})
        response["x-request-id"] = job.request_id
        return response


DOOR = ChatCompletionsDoor()


@csrf_exempt
@require_http_methods(["POST"])
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await serve(request, DOOR)


@csrf_exempt
async def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    error = InvalidRequest(f"Unknown path {request.path}", code="not_found", status=404)
    return error_response(error, request_id=new_request_id())
