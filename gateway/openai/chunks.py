"""Normalised upstream events -> ``chat.completion.chunk`` dicts, and the final ``chat.completion``.

One ``ReplyAssembler`` per request::

    reply = ReplyAssembler(request_id=..., model=spec.requested, created=int(time.time()), ...)
    async for event in events:
        for chunk in reply.feed(event):      # [] for ChatCreated, Heartbeat, ...
            send(f"data: {json.dumps(chunk)}\\n\\n")      # streaming only
        if reply.finished:                    # Done, a stop sequence or max_tokens: stop reading
            break
    body = reply.completion()                 # non-streaming answer

What the client sees:

* The first chunk carries ``delta.role = "assistant"``; answer text is ``delta.content``.
* Reasoning, by ``reasoning_format``: ``field`` -> ``delta.reasoning_content``; ``think_tags`` -> inside
  ``<think>\\n...\\n</think>\\n\\n`` at the start of ``content`` (reasoning that arrives after the answer
  began is dropped); ``hidden`` -> dropped.
* Citation markers ``[^1^]`` / ``[^1,2^]`` become ``[1]`` / ``[1][2]`` (textfilters.py; the Kimi clients have
  already turned the other forms, kimi-web-protocol.md C.1, into these). Each reference
  that names a known search result gets a ``url_citation`` annotation in ``delta.annotations`` on the chunk
  where both the text and the result are known; ``start_index``/``end_index`` are code-point offsets of
  ``[n]`` in the whole ``content``. Unless ``silent``, an answer that ends normally gets a source list
  (``\\n\\nSources:\\n[1] Title - url``; the cited results, or all of them when none was cited), each line
  with its own annotation; it is left out when it would contain a stop sequence or pass ``max_tokens``.
* ``stop`` cuts the content at the first stop sequence (``finish_reason: "stop"``, no source list);
  ``max_tokens`` cuts content + reasoning at the estimated limit (``"length"``); ``Done(finish_reason=
  "content_filter")`` appends ``CONTENT_FILTER_NOTICE`` (``"content_filter"``). Stop sequences apply to
  the answer text only, never to reasoning.
* The last chunk has an empty delta and ``finish_reason``; with ``include_usage`` a final chunk with
  ``choices: []`` and ``usage`` follows (and every other chunk has ``usage: null``, as OpenAI does).
* A failure mid-stream is sent as ``error_chunk(error)``.
* Client tools (the sink parses the answer, gateway/tools/): ``tool_call(call)`` gives OpenAI's two
  deltas for one call (``tool_calls[i]`` with id, type and name, then its arguments) and
  ``finish_tool_calls()`` ends the reply with ``"tool_calls"``; ``completion()`` then carries
  ``message.tool_calls`` and ``content`` only when the text before the call is not blank (else null).

Token estimates are described in usage.py. ``finished`` turns True with the last chunk; later events
give no chunks (``Done.message_id`` is still recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from gateway.kimi.base import ChatCreated, Done, KimiEvent, SearchResult, SearchResults, TextDelta, ThinkingDelta
from gateway.openai.errors import GatewayError
from gateway.openai.textfilters import Citation, CitationRewriter, StopFilter
from gateway.openai.usage import TokenTally, estimate_tokens
from gateway.tools.spec import ToolCall

Chunk = dict[str, object]
ReasoningFormat = Literal["field", "think_tags", "hidden"]
CONTENT_FILTER_NOTICE = "[Kimi's content filter stopped this answer.]"
THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"


def error_chunk(error: GatewayError) -> Chunk:
    """The ``data:`` payload for a failure after streaming began (OpenAI's ``{"error": {...}}``)."""
    return error.body()


def _source_line(number: int, result: SearchResult) -> str:
    title = " ".join(result.title.split())
    return f"[{number}] {title} - {result.url}" if title else f"[{number}] {result.url}"


def url_citation(result: SearchResult, start: int, end: int) -> dict[str, object]:
    citation = {"url": result.url, "title": result.title, "start_index": start, "end_index": end}
    return {"type": "url_citation", "url_citation": citation}


def _call_body(call: ToolCall, *, arguments: str) -> dict[str, object]:
    """``type`` and the function (or custom tool) of one call, with these arguments."""
    if call.kind == "custom":
        return {"type": "custom", "custom": {"name": call.name, "input": arguments}}
    return {"type": "function", "function": {"name": call.name, "arguments": arguments}}


class ReplyAssembler:
    """Builds one reply from upstream events; see the module docstring for the output."""

    def __init__(
        self,
        *,
        request_id: str,
        model: str,
        created: int,
        reasoning_format: ReasoningFormat = "field",
        silent: bool = False,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        include_usage: bool = False,
        prompt_text: str = "",
        completion_id: str | None = None,
        legacy_functions: bool = False,
    ) -> None:
        self.id = completion_id or f"chatcmpl-{request_id}"
        self.model, self.created = model, created
        self.reasoning_format, self.silent, self.max_tokens = reasoning_format, silent, max_tokens
        self.include_usage = include_usage
        self.prompt_tokens = estimate_tokens(prompt_text)
        self.chat_id: str | None = None
        self.message_id: str | None = None
        self.finish_reason: str | None = None
        self.first_content_emitted = False
        self._content: list[str] = []  # pieces, joined on demand (answers can be long)
        self._reasoning: list[str] = []  # as sent to the client (nothing when hidden)
        self.text_chars = 0  # characters of content sent so far
        self.annotations: list[dict[str, object]] = []
        self._tally, self._reasoning_tally = TokenTally(), TokenTally()
        self._citations, self._stops, self._stop_list = CitationRewriter(), StopFilter(stop), tuple(stop)
        self._results: list[SearchResult] = []
        self._pending: list[Citation] = []  # rewritten references not yet annotated
        self._cited: set[int] = set()
        self._answer_start: int | None = None  # offset of the answer text in content
        self._think_open = False
        self._role_sent = False
        self.tool_calls: list[ToolCall] = []
        self.legacy_functions = legacy_functions  # calls as function_call (gateway/openai/legacy_functions.py)

    # -- what the orchestrator reads ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def answer(self) -> str:
        """The answer text in ``content`` (without a ``<think>`` block before it)."""
        return self.content[self._answer_start :] if self._answer_start is not None else ""

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def stop_sequence(self) -> str | None:
        """The stop sequence that ended the answer (None when none did)."""
        return self._stops.matched

    @property
    def completion_tokens(self) -> int:
        return self._tally.tokens

    def usage(self) -> dict[str, object]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": self._reasoning_tally.tokens},
        }

    # -- events in, chunks out --------------------------------------------------------------------

    def feed(self, event: KimiEvent) -> list[Chunk]:
        """Chunks to stream for one upstream event (also kept for ``completion()``)."""
        if isinstance(event, ChatCreated):
            self.chat_id = event.chat_id
            return []
        if isinstance(event, Done):
            self.message_id = event.message_id or self.message_id
            return [] if self.finished else self._finish(event.finish_reason, natural=True)
        if self.finished:
            return []
        if isinstance(event, TextDelta):
            return self._answer(event.text)
        if isinstance(event, ThinkingDelta):
            return self._thinking(event.text)
        if isinstance(event, SearchResults):
            self._results.extend(event.results)
            annotations = self._resolve()
            return [self._chunk({"annotations": annotations})] if annotations else []
        return []  # Heartbeat: the caller sends its own keep-alive

    def tool_call(self, call: ToolCall) -> list[Chunk]:
        """One complete call, announced and sent in two deltas (the SDKs' accumulators rebuild it)."""
        if self.finished:
            return []
        index = len(self.tool_calls)
        # The text before the block leaves first: what the filters held back is released now.
        chunks = self._answer("", final=True) if index == 0 else []
        if self.finished:  # a stop sequence (or max_tokens) in the released text ends the answer there
            return chunks
        self.tool_calls.append(call)
        self._tally.add(call.name + call.arguments)
        if self._think_open:
            chunks.append(self._chunk(self._close_think()))
        if self.legacy_functions:  # one call, no id or index (the request kept only the first)
            return [*chunks, self._chunk({"function_call": {"name": call.name, "arguments": call.arguments}})]
        first = {"index": index, "id": call.id, **_call_body(call, arguments="")}
        second: dict[str, object] = {"index": index}
        if call.kind == "custom":
            second["custom"] = {"input": call.arguments}
        else:
            second["function"] = {"arguments": call.arguments}
        return [*chunks, self._chunk({"tool_calls": [first]}), self._chunk({"tool_calls": [second]})]

    def finish_tool_calls(self) -> list[Chunk]:
        """End the reply at the close of a call block: held-back text first, no source list."""
        if self.finished:
            return []
        chunks = self._answer("", final=True)
        if self.finished:
            return chunks
        return chunks + self._finish("function_call" if self.legacy_functions else "tool_calls", natural=False)

    def completion(self) -> dict[str, object]:
        """The non-streaming body. Called before ``finished``, it first ends the reply as ``Done()`` would."""
        if not self.finished:
            self._finish("stop", natural=True)
        message: dict[str, object] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            message["content"] = self.content if self.content.strip() else None
            if self.legacy_functions:
                message["function_call"] = {"name": self.tool_calls[0].name, "arguments": self.tool_calls[0].arguments}
            else:
                calls = [{"id": c.id, **_call_body(c, arguments=c.arguments)} for c in self.tool_calls]
                message["tool_calls"] = calls
        if self.reasoning and self.reasoning_format == "field":
            message["reasoning_content"] = self.reasoning
        message["annotations"] = self.annotations
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(),
        }

    # -- internals ---------------------------------------------------------------------------------

    def _thinking(self, text: str) -> list[Chunk]:
        if self.reasoning_format == "hidden" or not text:
            return []
        if self.reasoning_format == "think_tags":
            if self._answer_start is not None:
                return []  # the <think> block is closed; the answer must stay contiguous
            delta = {} if self._think_open else self._add_content(THINK_OPEN)
            self._think_open = True
            allowed = self._within_budget(text)
            delta = self._add_content(allowed, delta)
        else:
            allowed = self._within_budget(text)
            self._tally.add(allowed)
            delta = {"reasoning_content": allowed} if allowed else {}
        self._reasoning_tally.add(allowed)
        self._reasoning.append(allowed)
        chunks = [self._chunk(delta)] if delta else []
        if len(allowed) < len(text):
            chunks += self._finish("length", natural=False)
        return chunks

    def _answer(self, text: str, *, final: bool = False) -> list[Chunk]:
        rewritten, citations = self._citations.feed(text, final=final)
        self._pending.extend(citations)
        visible = self._stops.feed(rewritten, final=final)
        allowed = self._within_budget(visible)
        chunks = self._answer_chunk(allowed)
        if len(allowed) < len(visible):
            return chunks + self._finish("length", natural=False)
        if self._stops.stopped:
            return chunks + self._finish("stop", natural=False)
        return chunks

    def _answer_chunk(self, text: str) -> list[Chunk]:
        delta: Chunk = {}
        if text:
            if self._answer_start is None:
                delta = self._close_think()
                self._answer_start = self.text_chars
            delta = self._add_content(text, delta)
        annotations = self._resolve()
        if annotations:
            delta["annotations"] = annotations
        return [self._chunk(delta)] if delta else []

    def _finish(self, reason: str, *, natural: bool) -> list[Chunk]:
        """Emit the last chunk(s). ``natural``: the upstream ended (Done), so held-back text is flushed
        first and, on "stop", the source list is added; otherwise a stop sequence or max_tokens cut it."""
        chunks: list[Chunk] = []
        if natural:
            chunks = self._answer("", final=True)
            if self.finished:  # a stop sequence or max_tokens in the flushed text
                return chunks
        self.finish_reason = reason
        delta = self._close_think()
        if reason == "stop" and natural and not self.silent:
            delta = self._add_sources(delta)
        if reason == "content_filter":
            delta = self._add_content(("\n\n" if self.text_chars else "") + CONTENT_FILTER_NOTICE, delta)
        if delta:
            chunks.append(self._chunk(delta))
        chunks.append(self._chunk({}, finish_reason=reason))
        if self.include_usage:
            chunks.append(self._envelope([]) | {"usage": self.usage()})
        return chunks

    def _close_think(self) -> Chunk:
        if not self._think_open:
            return {}
        self._think_open = False
        return self._add_content(THINK_CLOSE)

    def _add_sources(self, delta: Chunk) -> Chunk:
        """Append the numbered source list, unless it would hold a stop sequence or pass max_tokens."""
        cited = sorted(n for n in self._cited if n <= len(self._results))
        numbers = cited or list(range(1, len(self._results) + 1))
        lines = [(n, _source_line(n, self._results[n - 1])) for n in numbers]
        footer = "\n\nSources:" + "".join("\n" + line for _, line in lines)
        if not lines or any(s in footer for s in self._stop_list) or self._within_budget(footer) != footer:
            return delta
        delta = self._add_content("\n\nSources:", delta)
        for number, line in lines:
            start = self.text_chars + 1
            delta = self._add_content("\n" + line, delta)
            self._annotate(delta, [url_citation(self._results[number - 1], start, start + len(line))])
        return delta

    def _add_content(self, text: str, delta: Chunk | None = None) -> Chunk:
        delta = {} if delta is None else delta
        if text:
            self._content.append(text)
            self.text_chars += len(text)
            self._tally.add(text)
            delta["content"] = str(delta.get("content", "")) + text
        return delta

    def _annotate(self, delta: Chunk, annotations: list[dict[str, object]]) -> None:
        self.annotations.extend(annotations)
        existing = delta.get("annotations")
        delta["annotations"] = (existing if isinstance(existing, list) else []) + annotations

    def _resolve(self) -> list[dict[str, object]]:
        """Annotations for references that are both sent and backed by a known result."""
        if self._answer_start is None:
            return []
        sent = self.text_chars - self._answer_start
        ready = [c for c in self._pending if c.end <= sent and 1 <= c.number <= len(self._results)]
        if not ready:
            return []
        done = set(ready)
        self._pending = [c for c in self._pending if c not in done]
        annotations = []
        for c in ready:
            self._cited.add(c.number)
            start = self._answer_start + c.start
            annotations.append(url_citation(self._results[c.number - 1], start, start + c.end - c.start))
        self.annotations.extend(annotations)
        return annotations

    def _within_budget(self, text: str) -> str:
        if self.max_tokens is None:
            return text
        return text[: self._tally.fitting_prefix(text, self.max_tokens)]

    def _chunk(self, delta: Chunk, finish_reason: str | None = None) -> Chunk:
        if any(k in delta for k in ("content", "reasoning_content", "annotations", "tool_calls", "function_call")):
            self.first_content_emitted = True
        if not self._role_sent:
            delta = {"role": "assistant", **(delta or {"content": ""})}
            self._role_sent = True
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice])

    def _envelope(self, choices: list[dict[str, object]]) -> Chunk:
        chunk: Chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk
