"""The chat completions answer as a pipeline sink (gateway/chat/sink.py): SSE chunks or one JSON body.

Both modes are one ``ReplyAssembler`` (chunks.py) per attempt; the streaming sink sends each chunk as a
``data:`` line and ends with ``[DONE]``, the collected one builds ``chat.completion`` at the end.

With client tools declared, the answer text goes through one ``ToolCallParser`` per attempt first
(gateway/tools/README.md): its text is forwarded, its calls become ``tool_calls`` deltas, and at the
close of the block the answer ends (``finished``) with ``"tool_calls"``. What the model writes after
that is only counted (the pipeline drains it, gateway/chat/finish.py). A tool call the client required
and did not get is raised as the parser's ``GatewayError`` (502 ``tool_call_missing`` /
``tool_call_malformed``): the pipeline turns it into the error body or the stream's error chunk.

With ``response_format`` the answer (no source list) is checked once it ended normally
(gateway/tools/structured.py): valid, the collected ``content`` is exactly the JSON text; invalid, the
check's 502 ``invalid_json_output`` is raised the same way (a stream has sent the text already and ends
with the error chunk). A streamed JSON answer loses its code fence on the way (gateway/tools/json_fence.py;
not with tools declared as well).

A collected answer with a call failing its schema, or invalid JSON output, may get one repair turn
(``repair_message``; the pipeline's gateway/chat/repair.py decides whether the key allows it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.chat.sink import ReplyStats
from gateway.kimi.base import Done, KimiEvent, TextDelta, ThinkingDelta
from gateway.openai.chunks import Chunk, ReasoningFormat, ReplyAssembler, error_chunk
from gateway.openai.errors import GatewayError
from gateway.openai.messages import Message, strip_think_prefix
from gateway.openai.request import ChatRequest
from gateway.records.settlements import ToolRecord
from gateway.tools.json_fence import JsonFenceStripper
from gateway.tools.parser import BlockClosed, CallReady, Event, Text, ToolCallParser
from gateway.tools.repair import calls_repair_message, json_repair_message
from gateway.tools.structured import check_json_output

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
PREVIEW_CHARS = 200


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChatCompletionSink:
    """One chat completion, streamed (``stream: true``) or collected."""

    def __init__(
        self,
        *,
        request_id: str,
        chat: ChatRequest,
        reasoning_format: ReasoningFormat,
        prompt_text: str,
        keep: bool,
        tool_nonce: str = "",
    ) -> None:
        self.request_id, self.chat, self.reasoning_format = request_id, chat, reasoning_format
        self.prompt_text, self.keep, self.tool_nonce = prompt_text, keep, tool_nonce
        self.assembler: ReplyAssembler | None = None
        self.conversation_id: str | None = None
        self.parser: ToolCallParser | None = None  # with tools declared: this attempt's
        self._reasoning: list[str] = []  # the attempt's reasoning text (a call may be found only there)
        self._json_text: str | None = None  # with response_format: the checked JSON answer
        self._fence: JsonFenceStripper | None = None  # a streamed response_format answer's code fence

    @property
    def streams(self) -> bool:
        return self.chat.stream

    @property
    def finished(self) -> bool:
        return self.assembler is not None and self.assembler.finished

    def start(self, *, chat_id: str) -> None:
        # The id a client continues with: the upstream chat id, only for kept conversations.
        self.conversation_id = (chat_id or None) if self.keep else None
        chat = self.chat
        self.assembler = ReplyAssembler(
            request_id=self.request_id,
            model=chat.model.requested,
            created=int(time.time()),
            reasoning_format=self.reasoning_format,
            silent=chat.model.silent or chat.response_format is not None,  # no source list after JSON
            max_tokens=chat.max_tokens,
            stop=chat.stop,
            include_usage=chat.include_usage,
            prompt_text=self.prompt_text,
            completion_id=self.conversation_id,
            legacy_functions=chat.legacy_functions,
        )
        self._json_text = None
        streamed_json = chat.stream and chat.response_format is not None and chat.tools is None
        self._fence = JsonFenceStripper() if streamed_json else None
        if chat.tools is not None:
            self.parser = ToolCallParser(chat.tools, nonce=self.tool_nonce)
            self._reasoning = []

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        chunks = self.chunks(event)
        return [sse(chunk) for chunk in chunks] if self.streams else ()

    def chunks(self, event: KimiEvent) -> list[Chunk]:
        """The chunks for one event, streamed or not (another door's sink translates these)."""
        assembler = self.assembler
        assert assembler is not None
        if self.parser is not None:
            chunks = self._feed_tools(event, self.parser)
        elif self._fence is not None:
            chunks = self._feed_unfenced(event, self._fence)
        else:
            chunks = assembler.feed(event)
        if self.chat.response_format is not None and self._json_text is None and assembler.finished:
            self._check_json(assembler)
        return chunks

    @property
    def json_text(self) -> str | None:
        """With ``response_format``: the checked JSON answer, once the answer ended."""
        return self._json_text

    def _feed_unfenced(self, event: KimiEvent, fence: JsonFenceStripper) -> list[Chunk]:
        """A streamed JSON answer's text without the code fence around it (held back only while it
        could still be one)."""
        assembler = self.assembler
        assert assembler is not None
        if isinstance(event, TextDelta):
            text = fence.feed(event.text)
            return assembler.feed(TextDelta(text)) if text else []
        if isinstance(event, Done) and not assembler.finished:
            tail = fence.feed("", final=True)
            return [*(assembler.feed(TextDelta(tail)) if tail else []), *assembler.feed(event)]
        return assembler.feed(event)

    def _check_json(self, assembler: ReplyAssembler) -> None:
        """The answer ended: check it against ``response_format`` (not after a call, a cut or a filter)."""
        fmt = self.chat.response_format
        assert fmt is not None
        if assembler.tool_calls or assembler.finish_reason != "stop":
            self._json_text = assembler.content
            return
        result = check_json_output(assembler.answer, fmt)
        self._json_text = result.json_text
        if result.error is not None:
            raise result.error

    @property
    def drains(self) -> bool:
        """The answer ended at a call block before the upstream's did: read the rest, unforwarded."""
        return self.parser is not None and self.parser.closed

    def log_flags(self) -> list[str]:
        """The tool outcome for the log row (read after the drain, so trailing text is counted)."""
        parser = self.parser
        if parser is None:
            return []
        parser.finish(reasoning="".join(self._reasoning))  # a no-op when already finished
        stats = parser.stats
        flags = [f"tools:{stats.declared}", f"tool_outcome:{stats.outcome}"]
        if stats.calls:
            flags.append(f"tool_calls:{stats.calls}")
        if stats.form:
            flags.append(f"tool_form:{stats.form}")
        flags += [f"tool_{flag}" for flag in stats.flags if flag != "trailing_after_tool"]
        if stats.unknown_names:
            flags.append("tool_unknown:" + ",".join(stats.unknown_names)[:100])
        if stats.trailing_chars:
            flags.append(f"trailing_after_tool:{stats.trailing_chars}")
        return flags

    def repair_message(self, error: GatewayError | None) -> str | None:
        """What a repair turn (gateway/chat/repair.py) tells the model: invalid JSON output, or calls
        that failed their schema; None when the answer is fine (or its error is not the model's)."""
        if error is not None:
            return json_repair_message(error.message) if error.code == "invalid_json_output" else None
        assembler, tools = self.assembler, self.chat.tools
        if assembler is None or tools is None or not any(call.problems for call in assembler.tool_calls):
            return None
        return calls_repair_message(assembler.tool_calls, tools=tools, nonce=self.tool_nonce)

    def tool_record(self) -> ToolRecord:
        """The tool columns of the log row (read after the drain, like ``log_flags``)."""
        parser = self.parser
        if parser is None:
            return ToolRecord()
        parser.finish(reasoning="".join(self._reasoning))  # a no-op when already finished
        stats = parser.stats
        return ToolRecord(
            declared=stats.declared,
            block_seen=stats.block_seen,
            outcome=stats.outcome,
            calls=stats.calls,
            unknown_names=stats.unknown_names,
        )

    def _feed_tools(self, event: KimiEvent, parser: ToolCallParser) -> list[Chunk]:
        assembler = self.assembler
        assert assembler is not None
        if isinstance(event, TextDelta):
            if parser.closed or assembler.finished:
                parser.feed(event.text)  # after the block (or a cut): only counted
                return []
            return self._tool_events(parser.feed(event.text))
        if isinstance(event, ThinkingDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, Done) and not assembler.finished:
            return self._end(parser) + assembler.feed(event)
        return assembler.feed(event)

    def _tool_events(self, events: Sequence[Event]) -> list[Chunk]:
        assembler = self.assembler
        assert assembler is not None and self.parser is not None
        chunks: list[Chunk] = []
        for event in events:
            if isinstance(event, Text):
                chunks += assembler.feed(TextDelta(event.text))
            elif isinstance(event, CallReady):
                chunks += assembler.tool_call(event.call)
            elif isinstance(event, BlockClosed):
                chunks += assembler.finish_tool_calls()
        if assembler.finished and not self.parser.closed:  # a stop sequence or max_tokens cut the answer
            chunks += self._end(self.parser)
        return chunks

    def _end(self, parser: ToolCallParser) -> list[Chunk]:
        """The answer ended: what the parser held back, calls it decides on now, or its error."""
        assembler = self.assembler
        assert assembler is not None
        end = parser.finish(reasoning="".join(self._reasoning))
        chunks = [] if assembler.finished else self._tool_events(end.events)
        if end.error is not None:
            raise end.error
        if end.calls and assembler.tool_calls:
            chunks += assembler.finish_tool_calls()
        return chunks

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def close(self) -> Sequence[bytes]:
        if not self.streams:
            if (self.parser is not None or self.chat.response_format is not None) and not self.finished:
                self.feed(Done())  # the upstream ended without a Done: the parser still decides
            return ()
        tail = [] if self.finished else list(self.feed(Done()))  # the upstream ended without a Done
        return [*tail, DONE]

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        return [sse(error_chunk(error)), DONE]

    def stats(self) -> ReplyStats:
        assembler = self.assembler
        if assembler is None:
            return ReplyStats()
        return ReplyStats(
            completion_chars=assembler.text_chars,
            prompt_tokens=assembler.prompt_tokens,
            completion_tokens=assembler.completion_tokens,
            answer_preview=assembler.content[:PREVIEW_CHARS],
        )

    def answer(self) -> Message | None:
        """The answer as the client got it, for native multi-turn (gateway/chat/sink.py ``AnswerSink``)."""
        assembler = self.assembler
        if assembler is None or not assembler.finished:
            return None
        text = self._json_text if self._json_text is not None and not assembler.tool_calls else assembler.content
        return Message(role="assistant", text=strip_think_prefix(text), tool_calls=tuple(assembler.tool_calls))

    def completion(self) -> dict[str, object]:
        """The collected ``chat.completion`` body."""
        assert self.assembler is not None
        body = self.assembler.completion()
        if self._json_text is not None and not self.assembler.tool_calls:
            choices = body["choices"]
            assert isinstance(choices, list)
            choices[0]["message"]["content"] = self._json_text
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        return body
