"""The Responses answer as a pipeline sink (gateway/chat/sink.py): OpenAI's event stream, or one body.

The answer is assembled exactly as for chat completions, by one ``ChatCompletionSink`` per attempt
(citations, the token budget, content-filter notice, client tools through the tool parser, the JSON
check), whose chunks are translated here into Responses items and events (stream.py): reasoning deltas
into a ``reasoning`` item, content into a ``message``, each tool call into a ``function_call`` or
``custom_tool_call`` item (a namespaced tool's call carries its ``namespace`` again), Kimi's search
results into one ``web_search_call`` item and ``url_citation`` annotations (no source list is appended
to the text, unlike chat completions: the sources are the annotations and the search item).

The end: ``stop`` / ``tool_calls`` -> ``response.completed``; ``length`` -> ``response.incomplete``
(``max_output_tokens``); ``content_filter`` -> ``response.incomplete`` (``content_filter``); a failure
after the first byte -> ``response.failed`` with the error's code. A stream never ends any other way.
An answer without any output (a local probe) still gets one empty message, so it is a valid answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.chat.sink import ReplyStats
from gateway.kimi.base import Done, KimiEvent, SearchResults
from gateway.openai.chunks import Chunk
from gateway.openai.errors import GatewayError
from gateway.openai.messages import Message
from gateway.openai.request import ChatRequest
from gateway.openai.sinks import ChatCompletionSink
from gateway.records.settlements import ToolRecord
from gateway.responses.errors import responses_error
from gateway.responses.request import ResponsesRequest
from gateway.responses.stream import Event, ResponseWriter
from gateway.responses.tools import split_name

KEEPALIVE = b": keep-alive\n\n"
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def sse_event(event: Event) -> bytes:
    name: str = event["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def echo_fields(request: ResponsesRequest) -> dict[str, Any]:
    """What the response object repeats of its request."""
    return {
        "model": request.model.requested,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "reasoning": dict(request.reasoning),
        "store": request.store,
        "temperature": 1.0,
        "text": dict(request.text),
        "tool_choice": request.tool_choice,
        "tools": list(request.raw_tools),
        "top_p": 1.0,
        "truncation": "disabled",
        "user": request.user,
        "metadata": dict(request.metadata),
        "prompt_cache_key": request.prompt_cache_key,
    }


def responses_usage(chat_usage: dict[str, Any]) -> dict[str, Any]:
    input_tokens, output_tokens = int(chat_usage["prompt_tokens"]), int(chat_usage["completion_tokens"])
    reasoning = int(chat_usage.get("completion_tokens_details", {}).get("reasoning_tokens", 0))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


class ResponsesSink:
    """One response, streamed (``stream: true``) or collected. ``completed`` is the final response
    object once the answer ended normally (what ``store`` records)."""

    def __init__(
        self,
        *,
        request_id: str,
        response_id: str,
        request: ResponsesRequest,
        prompt_text: str,
        tool_nonce: str,
        hide_reasoning: bool = False,
    ) -> None:
        self.request_id, self.response_id, self.request = request_id, response_id, request
        self.prompt_text, self.tool_nonce, self.hide_reasoning = prompt_text, tool_nonce, hide_reasoning
        self.engine: ChatCompletionSink | None = None
        self.writer = self._new_writer()
        self.completed: dict[str, Any] | None = None
        self.message_id = ""
        self._begun = False
        self._ended = False

    def _new_writer(self) -> ResponseWriter:
        return ResponseWriter(
            response_id=self.response_id,
            created_at=int(time.time()),
            echo=echo_fields(self.request),
            summary=self.request.summary == "summary",
        )

    @property
    def streams(self) -> bool:
        return self.request.stream

    @property
    def finished(self) -> bool:
        return self.engine is not None and self.engine.finished

    def start(self, *, chat_id: str) -> None:
        request = self.request
        chat = ChatRequest(
            model=dataclasses.replace(request.model, silent=True),  # sources are annotations, not a list
            messages=request.messages,
            files=request.files,
            stream=True,
            max_tokens=request.max_output_tokens or None,
            tools=request.tools.tools,
            response_format=request.response_format,
        )
        self.engine = ChatCompletionSink(
            request_id=self.request_id,
            chat=chat,
            reasoning_format="hidden" if self.hide_reasoning else "field",
            prompt_text=self.prompt_text,
            keep=False,
            tool_nonce=self.tool_nonce,
        )
        self.engine.start(chat_id=chat_id)
        self.writer, self._begun, self._ended, self.completed = self._new_writer(), False, False, None

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        engine = self.engine
        assert engine is not None
        if isinstance(event, Done) and event.message_id:
            self.message_id = event.message_id
        if self._ended:
            engine.chunks(event)  # the drain after a tool call: only counted
            return ()
        events = self._begin()
        if isinstance(event, SearchResults) and event.results:
            events += self.writer.search([r.url for r in event.results])
        events += self._translate(engine.chunks(event))
        return self._out(events)

    def close(self) -> Sequence[bytes]:
        engine = self.engine
        assert engine is not None
        events = self._begin()
        if not engine.finished:
            events += self._translate(engine.chunks(Done()))  # the upstream ended without a Done
        return self._out(events + self._end())

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        shaped = responses_error(error)
        events = self._begin()
        if not self._ended:
            self._ended = True
            usage = responses_usage(self.engine.assembler.usage()) if self.engine and self.engine.assembler else None
            events += self.writer.failed(code=shaped.code or "server_error", message=shaped.message, usage=usage)
        return self._out(events)

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def stats(self) -> ReplyStats:
        return self.engine.stats() if self.engine is not None else ReplyStats()

    @property
    def drains(self) -> bool:
        return self.engine is not None and self.engine.drains

    def log_flags(self) -> list[str]:
        return self.engine.log_flags() if self.engine is not None else []

    def tool_record(self) -> ToolRecord:
        return self.engine.tool_record() if self.engine is not None else ToolRecord()

    def answer(self) -> Message | None:
        """The answer as the client got it (native multi-turn, gateway/chat/sink.py ``AnswerSink``): the
        text of its message items and its calls, as the client resends them as input items."""
        base = self.engine.answer() if self.engine is not None and self.completed is not None else None
        if base is None:
            return None
        return dataclasses.replace(base, text=self.writer.text_so_far)

    def response(self) -> dict[str, Any]:
        """The collected response object (after ``close``)."""
        return self.completed if self.completed is not None else self.writer.response()

    # -- internals ----------------------------------------------------------------------------------

    def _begin(self) -> list[Event]:
        if self._begun:
            return []
        self._begun = True
        return self.writer.begin()

    def _end(self) -> list[Event]:
        engine = self.engine
        assert engine is not None and engine.assembler is not None
        if self._ended:
            return []
        self._ended = True
        writer = self.writer
        events: list[Event] = []
        if not writer.output:
            events += writer.empty_message()
        assembler = engine.assembler
        if engine.json_text is not None and not assembler.tool_calls and not self.streams:
            writer.replace_text(engine.json_text)
        reason = _INCOMPLETE.get(assembler.finish_reason or "stop")
        events += writer.end(responses_usage(assembler.usage()), incomplete=reason)
        self.completed = writer.response()
        return events

    def _translate(self, chunks: list[Chunk]) -> list[Event]:
        writer, engine = self.writer, self.engine
        assert engine is not None and engine.assembler is not None
        events: list[Event] = []
        for chunk in chunks:
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else []:
                delta = choice.get("delta") or {}
                events += writer.reasoning(str(delta.get("reasoning_content") or ""))
                events += writer.text(str(delta.get("content") or ""))
                for annotation in delta.get("annotations") or []:
                    cited = annotation["url_citation"]
                    events += writer.annotate(
                        url=cited["url"], title=cited["title"], start=cited["start_index"], end=cited["end_index"]
                    )
                for entry in delta.get("tool_calls") or []:
                    if "id" not in entry:
                        continue  # the arguments delta: the call is complete already
                    call = engine.assembler.tool_calls[entry["index"]]
                    name, namespace = split_name(call.name, self.request.namespaces)
                    events += writer.call(
                        call_id=call.id,
                        name=name,
                        arguments=call.arguments,
                        custom=call.kind == "custom",
                        namespace=namespace,
                    )
        return events

    def _out(self, events: list[Event]) -> Sequence[bytes]:
        return [sse_event(event) for event in events] if self.streams else ()
