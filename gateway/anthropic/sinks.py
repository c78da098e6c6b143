"""The Messages answer as pipeline sinks (gateway/chat/sink.py): Anthropic's SSE events or one body.

``MessagesSink`` is the chat completions sink (gateway/openai/sinks.py) with another wire shape: the
same ``ReplyAssembler`` does the citation markers, stop sequences and ``max_tokens`` cut, the same tool
parser reads the calls (ids ``toolu_…``) and drains the upstream after a call block, and the chunks it
produces are read into Anthropic's content blocks by a ``MessageBuilder`` (events.py). No source list is
appended: search results are blocks of their own and references are ``citations`` on the text.

Stream: ``message_start`` goes out with the first event (or the first ``ping``), the blocks as they
come, then ``message_delta`` and ``message_stop``. A failure after the first byte is an ``event: error``
with Anthropic's error object (errors.py) and the stream ends there.

Stop reasons: the answer ended normally ``end_turn``; at a stop sequence ``stop_sequence`` (with the
sequence); cut at ``max_tokens`` or a probe answered locally ``max_tokens``; a call block ``tool_use``;
Kimi's content filter ``refusal``.

``CountTokensSink`` answers ``count_tokens``: ``{"input_tokens": N}`` with the estimate ``usage`` uses
(gateway/openai/usage.py) of what would be sent upstream, at least 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import orjson

from gateway.anthropic.errors import anthropic_error_body
from gateway.anthropic.events import Event, MessageBuilder
from gateway.anthropic.request import MessagesRequest
from gateway.anthropic.tools import new_tool_use_id
from gateway.chat.sink import ReplyStats
from gateway.kimi.base import Done, KimiEvent, SearchResults
from gateway.openai.chunks import Chunk
from gateway.openai.errors import GatewayError
from gateway.openai.request import ChatRequest
from gateway.openai.sinks import ChatCompletionSink
from gateway.openai.usage import estimate_tokens
from gateway.tools.parser import ToolCallParser

PING: Event = ("ping", {"type": "ping"})
_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def sse_event(event: Event) -> bytes:
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesSink(ChatCompletionSink):
    """One Messages answer, streamed (``stream: true``) or collected."""

    def __init__(
        self,
        *,
        request_id: str,
        request: MessagesRequest,
        prompt_text: str,
        tool_nonce: str,
        signing_key: bytes,
        probe: bool = False,
    ) -> None:
        chat = ChatRequest(
            model=dataclasses.replace(request.model, silent=True),  # no source list: blocks and citations
            messages=request.messages,
            files=request.files,
            stream=request.stream,
            max_tokens=request.max_tokens,
            stop=request.stop_sequences,
            tools=request.tools,
        )
        super().__init__(
            request_id=request_id,
            chat=chat,
            reasoning_format="field" if request.thinking else "hidden",
            prompt_text=prompt_text,
            keep=False,
            tool_nonce=tool_nonce,
        )
        self.request, self.signing_key, self.probe = request, signing_key, probe
        self.builder = self._builder()
        self._started = False  # message_start sent
        self._ended = False  # message_delta built

    def _builder(self) -> MessageBuilder:
        return MessageBuilder(
            message_id=f"msg_{self.request_id}",
            model=self.request.model.requested,
            input_tokens=max(1, estimate_tokens(self.prompt_text)),
            signing_key=self.signing_key,
            omit_thinking=self.request.thinking == "omitted",
            search_query=self.request.search_query,
        )

    def start(self, *, chat_id: str) -> None:
        super().start(chat_id=chat_id)
        if self.parser is not None:  # the same parser, with Anthropic's call ids
            self.parser = ToolCallParser(self.chat.tools, nonce=self.tool_nonce, new_id=new_tool_use_id)
        self.builder = self._builder()  # a failover starts the answer again
        self._ended = False

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        return self._send(self._events(event))

    def _events(self, event: KimiEvent) -> list[Event]:
        assembler = self.assembler
        assert assembler is not None
        events: list[Event] = []
        if isinstance(event, SearchResults) and self.request.model.search and not assembler.finished:
            events += self.builder.search(event.results)
        chunks = assembler.feed(event) if self.parser is None else self._feed_tools(event, self.parser)
        for chunk in chunks:
            events += self._read(chunk)
        return events

    def _read(self, chunk: Chunk) -> list[Event]:
        """One chat completions chunk -> block events (its finish_reason is read at the end)."""
        assembler = self.assembler
        assert assembler is not None
        events: list[Event] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            delta = choice.get("delta") or {}
            events += self.builder.thinking(delta.get("reasoning_content") or "")
            events += self.builder.text(delta.get("content") or "")
            for note in delta.get("annotations") or []:
                cited = note.get("url_citation") or {}
                events += self.builder.citation(str(cited.get("url", "")), str(cited.get("title", "")))
            for item in delta.get("tool_calls") or []:
                call = next((c for c in assembler.tool_calls if c.id == item.get("id")), None)
                if call is not None:  # the first of OpenAI's two deltas names the call: it is complete
                    events += self.builder.tool_use(call)
        return events

    def keepalive(self) -> bytes:
        return b"".join(self._send([PING]))

    def close(self) -> Sequence[bytes]:
        events = [] if self.finished else self._events(Done())  # the upstream ended without a Done
        return self._send(events + self._finish())

    def _finish(self) -> list[Event]:
        assembler = self.assembler
        assert assembler is not None
        if self._ended:
            return []
        self._ended = True
        reason = _STOP_REASONS.get(assembler.finish_reason or "stop", "end_turn")
        stop_sequence = assembler.stop_sequence if reason == "end_turn" else None
        if stop_sequence is not None:
            reason = "stop_sequence"
        if self.probe:
            reason = "max_tokens"  # what max_tokens: 1 would end with
        return self.builder.finish(
            stop_reason=reason, stop_sequence=stop_sequence, output_tokens=assembler.completion_tokens
        )

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        return self._send([("error", anthropic_error_body(error, request_id=self.request_id))])

    def _send(self, events: list[Event]) -> Sequence[bytes]:
        if not self.streams:
            return ()
        if not self._started:
            self._started = True
            events = [self.builder.start(), *events]
        return [sse_event(event) for event in events]

    def message(self) -> dict[str, object]:
        """The collected ``message`` body."""
        return self.builder.message()


class CountTokensSink:
    """``count_tokens``: answered locally, one ``{"input_tokens": N}`` body."""

    streams = False

    def __init__(self, *, prompt_text: str) -> None:
        self.input_tokens = max(1, estimate_tokens(prompt_text))
        self.finished = False

    def start(self, *, chat_id: str) -> None:
        self.finished = False

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        self.finished = isinstance(event, Done)
        return ()

    def keepalive(self) -> bytes:
        return b""

    def close(self) -> Sequence[bytes]:
        return ()

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        return ()

    def stats(self) -> ReplyStats:
        return ReplyStats(prompt_tokens=self.input_tokens, answer_preview=f"input_tokens={self.input_tokens}")

    def body(self) -> dict[str, object]:
        return {"input_tokens": self.input_tokens}
