"""What a front door plugs into the pipeline to give the answer its wire shape: a ``Sink``.

The pipeline runs one loop over upstream events (gateway/chat/run.py) and hands each to the sink,
which returns the bytes to send (a streaming sink) or keeps them for one body at the end (a collected
sink; its door builds the response from it). A streaming sink commits to the client at the first byte,
so only a collected sink lets the pipeline fail over after the answer began. A sink's ``feed`` or
``close`` may raise ``GatewayError`` when the answer turns out unusable at its end (a tool call the
client required and did not get): a collected answer becomes that error, a stream ends with ``fail``.

A sink may also be a ``DrainingSink``: when its answer ended before the upstream's (a tool call block
closed), the final write first reads the rest of the upstream answer into ``feed`` without sending it,
so the turn ends cleanly before the chat is deleted, then logs the sink's ``log_flags()`` and
``tool_record()`` (the log row's client-tool columns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gateway.kimi.base import KimiEvent
from gateway.openai.errors import GatewayError
from gateway.openai.messages import Message
from gateway.records.settlements import ToolRecord


@dataclasses.dataclass(frozen=True)
class ReplyStats:
    """What the reply produced, for the log row."""

    completion_chars: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answer_preview: str = ""


class Sink(Protocol):
    """One request's answer in a front door's wire shape."""

    @property
    def streams(self) -> bool:
        """True: bytes leave as events arrive (keep-alives in silences, no failover once started)."""
        ...

    @property
    def finished(self) -> bool:
        """The answer is complete (a stop sequence, a length cut or Done): stop reading."""
        ...

    def start(self, *, chat_id: str) -> None:
        """An attempt's answer begins (again, after a failover) in upstream chat ``chat_id``."""
        ...

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        """Take one upstream event; return what to send now (nothing for a collected sink)."""
        ...

    def keepalive(self) -> bytes:
        """What a streaming sink sends during a silence."""
        ...

    def close(self) -> Sequence[bytes]:
        """The normal end of the answer (ends it as ``Done`` would when the upstream did not)."""
        ...

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        """A failure after the first byte: say so in the stream and end it properly."""
        ...

    def stats(self) -> ReplyStats: ...


@runtime_checkable
class AnswerSink(Protocol):
    """A sink that can say what the client got, as a neutral assistant message: native multi-turn keeps
    its fingerprint (gateway/chat/native.py). A sink without it is never continued natively."""

    def answer(self) -> Message | None:
        """The answer as the client saw it (text and tool calls); None when there is none to continue."""
        ...


@runtime_checkable
class DrainingSink(Protocol):
    """A sink whose answer may end before the upstream's (see the module docstring)."""

    @property
    def drains(self) -> bool:
        """The rest of the upstream answer is to be read (into ``feed``, its output dropped)."""
        ...

    def feed(self, event: KimiEvent) -> Sequence[bytes]: ...

    def log_flags(self) -> list[str]:
        """Flags for the log row, read after the drain."""
        ...

    def tool_record(self) -> ToolRecord:
        """The log row's client-tool columns, read after the drain (``ToolRecord()``: no tools)."""
        ...
