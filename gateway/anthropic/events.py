"""One answer as Anthropic's content blocks: the stream events and, at the end, the ``message`` body.

A ``MessageBuilder`` is fed what the answer is made of, in order (the sink, sinks.py, reads it off the
chat completions assembler, which already did the citation markers, stop sequences and ``max_tokens``):
``text``, ``thinking``, ``citation``, ``tool_use`` and ``search``. Each returns the events to stream,
as ``(event name, data)``; the same blocks are kept for the collected body (``message``).

Blocks open and close as the kind changes: text and thinking deltas go to the open block of that kind,
anything else closes it first. A thinking block ends with its ``signature_delta`` (thinking.py); with
``display: "omitted"`` it carries no ``thinking_delta`` at all. A tool call is one ``tool_use`` block:
``content_block_start`` with ``input: {}``, one ``input_json_delta`` with the whole arguments, stop (the
call is complete when the parser gives it out). A web search is a ``server_tool_use`` block (its
``input.query`` is the question) and a ``web_search_tool_result`` block listing the results; references
to them in the text are ``citations_delta`` events (``web_search_result_location``).

``finish`` closes the open block, adds an empty text block when the answer has no block at all (a
probe, an empty answer: still a valid message), and gives ``message_delta`` (``stop_reason``,
``stop_sequence``, usage) and ``message_stop``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from gateway.anthropic.thinking import thinking_signature
from gateway.anthropic.tools import new_server_tool_use_id
from gateway.kimi.base import SearchResult
from gateway.tools.spec import ToolCall

Event = tuple[str, dict[str, Any]]
StopReason = str  # end_turn | max_tokens | stop_sequence | tool_use | refusal


class MessageBuilder:
    def __init__(
        self,
        *,
        message_id: str,
        model: str,
        input_tokens: int,
        signing_key: bytes,
        omit_thinking: bool = False,
        search_query: str = "",
    ) -> None:
        self.id, self.model, self.input_tokens = message_id, model, input_tokens
        self.signing_key, self.omit_thinking, self.search_query = signing_key, omit_thinking, search_query
        self.blocks: list[dict[str, Any]] = []
        self._open: str | None = None  # the kind of the last block while it is open
        self._thinking: list[str] = []  # the open thinking block's text (signed when it closes)
        self._results: dict[str, SearchResult] = {}
        self.searches = 0
        self.stop_reason: StopReason | None = None
        self.stop_sequence: str | None = None
        self.output_tokens = 0

    # -- the answer, piece by piece -------------------------------------------------------------------

    def start(self) -> Event:
        message = self._message_fields(content=[], stop_reason=None, stop_sequence=None, output_tokens=0)
        return "message_start", {"type": "message_start", "message": message}

    def text(self, text: str) -> list[Event]:
        if not text:
            return []
        events = self._ensure("text", {"type": "text", "text": ""})
        self.blocks[-1]["text"] += text
        return [*events, self._delta({"type": "text_delta", "text": text})]

    def thinking(self, text: str) -> list[Event]:
        if not text:
            return []
        events = self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self._thinking.append(text)
        if self.omit_thinking:
            return events
        self.blocks[-1]["thinking"] += text
        return [*events, self._delta({"type": "thinking_delta", "thinking": text})]

    def citation(self, url: str, title: str) -> list[Event]:
        """A reference in the text to a search result (the text block it belongs to is the open one)."""
        result = self._results.get(url)
        cited = (result.snippet if result is not None else "") or title
        citation = {
            "type": "web_search_result_location",
            "url": url,
            "title": title or None,
            "encrypted_index": base64.b64encode(url.encode()).decode(),
            "cited_text": cited[:150],
        }
        events = self._ensure("text", {"type": "text", "text": ""})
        self.blocks[-1].setdefault("citations", []).append(citation)
        return [*events, self._delta({"type": "citations_delta", "citation": citation})]

    def tool_use(self, call: ToolCall) -> list[Event]:
        events = self._close()
        self.blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)})
        index = len(self.blocks) - 1
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        return [
            *events,
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            self._delta({"type": "input_json_delta", "partial_json": call.arguments}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]

    def search(self, results: tuple[SearchResult, ...]) -> list[Event]:
        """Kimi searched: a ``server_tool_use`` block and its ``web_search_tool_result``."""
        if not results:
            return []
        events = self._close()
        self.searches += 1
        for result in results:
            self._results.setdefault(result.url, result)
        call_id = new_server_tool_use_id()
        query = {"query": self.search_query}
        self.blocks.append({"type": "server_tool_use", "id": call_id, "name": "web_search", "input": query})
        start = {"type": "server_tool_use", "id": call_id, "name": "web_search", "input": {}}
        index = len(self.blocks) - 1
        events += [
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            self._delta({"type": "input_json_delta", "partial_json": json.dumps(query, ensure_ascii=False)}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
        found = {"type": "web_search_tool_result", "tool_use_id": call_id, "content": [_result(r) for r in results]}
        self.blocks.append(found)
        index += 1
        return [
            *events,
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": found}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]

    def finish(self, *, stop_reason: StopReason, stop_sequence: str | None, output_tokens: int) -> list[Event]:
        events = self._close()
        if not self.blocks:  # a valid message has a block; an empty answer is one empty text block
            events += self._ensure("text", {"type": "text", "text": ""}) + self._close()
        self.stop_reason, self.stop_sequence, self.output_tokens = stop_reason, stop_sequence, output_tokens
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        usage = {"input_tokens": self.input_tokens, "output_tokens": output_tokens, **self._server_usage()}
        return [
            *events,
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def message(self) -> dict[str, Any]:
        """The collected body (after ``finish``)."""
        return self._message_fields(
            content=self.blocks,
            stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
            output_tokens=self.output_tokens,
        )

    # -- internals ------------------------------------------------------------------------------------

    def _message_fields(
        self, *, content: list[dict[str, Any]], stop_reason: str | None, stop_sequence: str | None, output_tokens: int
    ) -> dict[str, Any]:
        usage = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            **self._server_usage(),
        }
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def _server_usage(self) -> dict[str, Any]:
        return {"server_tool_use": {"web_search_requests": self.searches}} if self.searches else {}

    def _ensure(self, kind: str, empty: dict[str, Any]) -> list[Event]:
        if self._open == kind:
            return []
        events = self._close()
        self.blocks.append(dict(empty))
        self._open = kind
        index = len(self.blocks) - 1
        return [
            *events,
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty}),
        ]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        events: list[Event] = []
        if self._open == "thinking":
            signature = thinking_signature("".join(self._thinking), key=self.signing_key)
            self.blocks[-1]["signature"] = signature
            self._thinking = []
            events.append(self._delta({"type": "signature_delta", "signature": signature}))
        self._open = None
        events.append(("content_block_stop", {"type": "content_block_stop", "index": len(self.blocks) - 1}))
        return events

    def _delta(self, delta: Mapping[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}


def _input(arguments: str) -> object:
    """A call's ``input`` object (the parser gives valid JSON; anything else is wrapped, never lost)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}


def _result(result: SearchResult) -> dict[str, Any]:
    return {
        "type": "web_search_result",
        "url": result.url,
        "title": result.title,
        "encrypted_content": base64.b64encode(result.snippet.encode()).decode(),
        "page_age": None,
    }
