"""The chat completions answer as a pipeline sink (gateway/chat/sink.py): SSE chunks or one JSON body.

Both modes are one ``ReplyAssembler`` (chunks.py) per attempt; the streaming sink sends each chunk as a
``data:`` line and ends with ``[DONE]``, the collected one builds ``chat.completion`` at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.chat.sink import ReplyStats
from gateway.kimi.base import Done, KimiEvent
from gateway.openai.chunks import ReasoningFormat, ReplyAssembler, error_chunk
from gateway.openai.errors import GatewayError
from gateway.openai.request import ChatRequest

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
PREVIEW_CHARS = 200


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChatCompletionSink:
    """One chat completion, streamed (``stream: true``) or collected."""

    def __init__(
        self, *, request_id: str, chat: ChatRequest, reasoning_format: ReasoningFormat, prompt_text: str, keep: bool
    ) -> None:
        self.request_id, self.chat, self.reasoning_format = request_id, chat, reasoning_format
        self.prompt_text, self.keep = prompt_text, keep
        self.assembler: ReplyAssembler | None = None
        self.conversation_id: str | None = None

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
            silent=chat.model.silent,
            max_tokens=chat.max_tokens,
            stop=chat.stop,
            include_usage=chat.include_usage,
            prompt_text=self.prompt_text,
            completion_id=self.conversation_id,
        )

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        assert self.assembler is not None
        chunks = self.assembler.feed(event)
        return [sse(chunk) for chunk in chunks] if self.streams else ()

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def close(self) -> Sequence[bytes]:
        if not self.streams:
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

    def completion(self) -> dict[str, object]:
        """The collected ``chat.completion`` body."""
        assert self.assembler is not None
        body = self.assembler.completion()
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        return body
