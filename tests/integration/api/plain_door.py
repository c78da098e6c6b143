"""A tiny second front door, used only by its test: plain prompts in, plain text out.

It exists to prove that a door is an adapter and nothing more (gateway/chat/README.md): it parses its
own request into the neutral turn, brings its own sink (an event stream of text, or one JSON body)
and its own error shape, and the pipeline does the rest — accept and logging, reservation, failover,
the upstream turn, the final write and the chat delete.

    POST {"prompt": "...", "stream": false, "model": "kimi", "local": "<text>", "probe": false}
      -> 200 {"text": "..."}                        (collected)
      -> 200 text/event-stream: "event: text\\ndata: <json string>\\n\\n" ... "event: end\\n\\n"
    errors: {"problem": "...", "code": "...", "status": 400}   (and "event: problem" mid-stream)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.chat.door import FrontDoor, serve
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody
from gateway.chat.sink import ReplyStats
from gateway.chat.turn import Job, Turn
from gateway.kimi.base import KimiEvent, TextDelta
from gateway.openai.errors import GatewayError, InvalidRequest
from gateway.openai.messages import Message
from gateway.openai.model_names import parse_model


def _event(name: str, data: object | None = None) -> bytes:
    line = f"event: {name}\n" + (f"data: {json.dumps(data)}\n" if data is not None else "")
    return (line + "\n").encode()


class PlainSink:
    def __init__(self, *, stream: bool) -> None:
        self.streams = stream
        self.finished = False
        self.parts: list[str] = []

    def start(self, *, chat_id: str) -> None:
        self.parts = []  # a failover starts the answer again

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        if not isinstance(event, TextDelta):
            return ()
        self.parts.append(event.text)
        return [_event("text", event.text)] if self.streams else ()

    def keepalive(self) -> bytes:
        return b": still here\n\n"

    def close(self) -> Sequence[bytes]:
        self.finished = True
        return [_event("end")] if self.streams else ()

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        return [_event("problem", {"problem": error.message, "code": error.code})]

    def stats(self) -> ReplyStats:
        text = "".join(self.parts)
        return ReplyStats(completion_chars=len(text), answer_preview=text[:200])


class PlainDoor(FrontDoor[bool, PlainSink]):
    def parse(self, body: object) -> tuple[Turn, bool]:
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
            raise InvalidRequest("Send {'prompt': '<text>'}.", param="prompt", code="missing_prompt")
        stream = body.get("stream") is True
        model = parse_model(str(body.get("model") or "kimi"))
        local = body.get("local") if isinstance(body.get("local"), str) else None  # answered by the gateway
        messages = (Message(role="user", text=body["prompt"]),)
        turn = Turn(model=model, messages=messages, stream=stream, local_answer=local, probe=body.get("probe") is True)
        return turn, stream

    def sink(self, job: Job, parsed: bool) -> PlainSink:
        return PlainSink(stream=parsed)

    def error_response(self, error: GatewayError, *, request_id: str) -> HttpResponseBase:
        body = {"problem": error.message, "code": error.code, "status": error.status}
        response = JsonResponse(body, status=error.status)
        for name, value in error.headers().items():  # e.g. Retry-After
            response[name] = value
        response["x-request-id"] = request_id
        return response

    def stream_response(self, body: StreamBody, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["x-request-id"] = job.request_id
        return response

    def collected_response(self, sink: PlainSink, *, job: Job, reply: Reply) -> HttpResponseBase:
        response = JsonResponse({"text": "".join(sink.parts)})
        response["x-request-id"] = job.request_id
        return response


DOOR = PlainDoor()


@csrf_exempt
async def plain_view(request: HttpRequest) -> HttpResponseBase:
    return await serve(request, DOOR)
