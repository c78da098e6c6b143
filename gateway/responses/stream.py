"""One Responses answer as OpenAI's event stream and its final ``response`` object (pure).

    writer = ResponseWriter(response_id=new_response_id(), created_at=int(time.time()), echo=...)
    writer.begin()                   -> response.created, response.in_progress
    writer.reasoning(text)           -> a ``reasoning`` item: summary parts (``summary`` mode:
                                        reasoning_summary_part.added, reasoning_summary_text.delta with
                                        summary_index) or reasoning text (reasoning_text.delta)
    writer.text(text)                -> a ``message`` item: output_item.added, content_part.added,
                                        output_text.delta
    writer.annotate(url, title, start, end) -> response.output_text.annotation.added (url_citation)
    writer.search(urls)              -> a ``web_search_call`` item (in_progress, searching, completed)
    writer.call(call)                -> a ``function_call`` (function_call_arguments.delta/.done) or
                                        ``custom_tool_call`` (custom_tool_call_input.delta/.done) item
    writer.end(usage, incomplete=None) -> the open item's .done events, then response.completed (or
                                        response.incomplete with incomplete_details.reason)
    writer.failed(code, message)     -> the open item closed, then response.failed (error set)
    writer.response()                -> the response object as it stands (GET, the collected answer)

Every event carries ``sequence_number`` (0, 1, 2 ... in order), as OpenAI's do. Only one item is open at
a time: a new kind of output closes the one before (``output_item.done`` is the authoritative item).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

Event = dict[str, Any]
Item = dict[str, Any]


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _item_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_hex(24)


class ResponseWriter:
    """See the module docstring. ``echo``: the request fields the response object repeats (model,
    instructions, tools, tool_choice, ...). ``summary``: reasoning as summary parts, else as text."""

    def __init__(self, *, response_id: str, created_at: int, echo: Mapping[str, Any], summary: bool = False) -> None:
        self.id, self.created_at, self.echo, self.summary = response_id, created_at, dict(echo), summary
        self.status = "in_progress"
        self.output: list[Item] = []  # finished items and the open one (last), in output order
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self._seq = 0
        self._open: Item | None = None
        self._searched = False
        self._chars_in = 0  # answer text received, whitespace left out included (citation offsets)
        self._space = ""  # whitespace that would open a message, held until text follows

    # -- what the sink reads ------------------------------------------------------------------------

    @property
    def text_so_far(self) -> str:
        return "".join(self._message_text(item) for item in self.output if item["type"] == "message")

    def response(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "background": False,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "output": _snapshot(self.output),
            "usage": self.usage,
            **self.echo,
        }

    # -- lifecycle ----------------------------------------------------------------------------------

    def begin(self) -> list[Event]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def end(self, usage: dict[str, Any], *, incomplete: str | None = None) -> list[Event]:
        events = self._close()
        self.usage = usage
        if incomplete is not None:
            self.status, self.incomplete = "incomplete", {"reason": incomplete}
            return [*events, self._event("response.incomplete", response=self.response())]
        self.status = "completed"
        return [*events, self._event("response.completed", response=self.response())]

    def failed(self, *, code: str, message: str, usage: dict[str, Any] | None = None) -> list[Event]:
        events = self._close(status="incomplete")
        self.status, self.error, self.usage = "failed", {"code": code, "message": message}, usage
        return [*events, self._event("response.failed", response=self.response())]

    # -- output -------------------------------------------------------------------------------------

    def reasoning(self, text: str) -> list[Event]:
        if not text:
            return []
        events: list[Event] = []
        item = self._open
        if item is None or item["type"] != "reasoning":
            events += self._close()
            item = {"id": _item_id("rs"), "type": "reasoning", "summary": [], "status": "in_progress"}
            if not self.summary:
                item["content"] = []
            events += self._add(item)
            if self.summary:
                item["summary"].append({"type": "summary_text", "text": ""})
                events.append(
                    self._at(
                        item,
                        "response.reasoning_summary_part.added",
                        summary_index=0,
                        part={"type": "summary_text", "text": ""},
                    )
                )
            else:
                item["content"].append({"type": "reasoning_text", "text": ""})
        if self.summary:
            item["summary"][0]["text"] += text
            events.append(self._at(item, "response.reasoning_summary_text.delta", summary_index=0, delta=text))
        else:
            item["content"][0]["text"] += text
            events.append(self._at(item, "response.reasoning_text.delta", content_index=0, delta=text))
        return events

    def text(self, text: str) -> list[Event]:
        if not text:
            return []
        self._chars_in += len(text)
        if self._open is None or self._open["type"] != "message":
            # Whitespace alone does not open a message (the newline before a tool call would be one).
            text, self._space = self._space + text, ""
            if not text.strip():
                self._space = text
                return []
        events, item = self._message()
        part = item["content"][0]
        part["text"] += text
        events.append(self._at(item, "response.output_text.delta", content_index=0, delta=text, logprobs=[]))
        return events

    def annotate(self, *, url: str, title: str, start: int, end: int) -> list[Event]:
        """A url_citation; ``start``/``end`` are offsets in the text of all messages so far."""
        events, item = self._message()
        base = self._chars_in - len(self._message_text(item))  # what came before this message
        annotation = {
            "type": "url_citation",
            "url": url,
            "title": title,
            "start_index": max(0, start - base),
            "end_index": max(0, end - base),
        }
        annotations = item["content"][0]["annotations"]
        annotations.append(annotation)
        events.append(
            self._at(
                item,
                "response.output_text.annotation.added",
                content_index=0,
                annotation_index=len(annotations) - 1,
                annotation=annotation,
            )
        )
        return events

    def search(self, urls: list[str]) -> list[Event]:
        """Kimi searched: one ``web_search_call`` item per answer (later results only add citations)."""
        if self._searched:
            return []
        self._searched = True
        events = self._close()
        sources = [{"type": "url", "url": url} for url in urls]
        item = {
            "id": _item_id("ws"),
            "type": "web_search_call",
            "status": "in_progress",
            "action": {"type": "search", "query": "", "sources": sources},
        }
        events += self._add(item)
        events.append(self._at(item, "response.web_search_call.in_progress"))
        events.append(self._at(item, "response.web_search_call.searching"))
        events.append(self._at(item, "response.web_search_call.completed"))
        return events + self._close()

    def call(
        self, *, call_id: str, name: str, arguments: str, custom: bool, namespace: str | None = None
    ) -> list[Event]:
        events = self._close()
        if custom:
            item: Item = {
                "id": _item_id("ctc"),
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": call_id,
                "name": name,
                "input": "",
            }
        else:
            item = {
                "id": _item_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id,
                "name": name,
                "arguments": "",
            }
        if namespace:
            item["namespace"] = namespace
        events += self._add(item)
        if custom:
            item["input"] = arguments
            events.append(self._at(item, "response.custom_tool_call_input.delta", delta=arguments))
            events.append(self._at(item, "response.custom_tool_call_input.done", input=arguments))
        else:
            item["arguments"] = arguments
            events.append(self._at(item, "response.function_call_arguments.delta", delta=arguments))
            events.append(self._at(item, "response.function_call_arguments.done", name=name, arguments=arguments))
        return events + self._close()

    def empty_message(self) -> list[Event]:
        """An empty assistant message (an answer with no output at all, e.g. a local probe)."""
        events, _ = self._message()
        return events

    def replace_text(self, text: str) -> None:
        """The collected answer's text once checked (structured output without fences around it)."""
        messages = [item for item in self.output if item["type"] == "message"]
        if len(messages) == 1:
            messages[0]["content"][0]["text"] = text

    # -- internals ----------------------------------------------------------------------------------

    def _message(self) -> tuple[list[Event], Item]:
        item = self._open
        if item is not None and item["type"] == "message":
            return [], item
        events = self._close()
        item = {"id": _item_id("msg"), "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        events += self._add(item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item["content"].append(part)
        events.append(self._at(item, "response.content_part.added", content_index=0, part={**part, "annotations": []}))
        return events, item

    @staticmethod
    def _message_text(item: Item) -> str:
        return "".join(part.get("text", "") for part in item["content"])

    def _add(self, item: Item) -> list[Event]:
        if item["type"] != "message":
            self._space = ""  # the whitespace before another kind of item is left out
        self.output.append(item)
        self._open = item
        return [self._event("response.output_item.added", output_index=len(self.output) - 1, item=_snapshot(item))]

    def _close(self, status: str = "completed") -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        events: list[Event] = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._at(item, "response.output_text.done", content_index=0, text=part["text"], logprobs=[]))
            events.append(self._at(item, "response.content_part.done", content_index=0, part=_snapshot(part)))
        elif item["type"] == "reasoning" and self.summary and item["summary"]:
            summary = item["summary"][0]
            events.append(self._at(item, "response.reasoning_summary_text.done", summary_index=0, text=summary["text"]))
            events.append(self._at(item, "response.reasoning_summary_part.done", summary_index=0, part=dict(summary)))
        elif item["type"] == "reasoning" and item.get("content"):
            events.append(
                self._at(item, "response.reasoning_text.done", content_index=0, text=item["content"][0]["text"])
            )
        item["status"] = status
        events.append(
            self._event("response.output_item.done", output_index=self.output.index(item), item=_snapshot(item))
        )
        return events

    def _at(self, item: Item, kind: str, **fields: Any) -> Event:
        return self._event(kind, item_id=item["id"], output_index=self.output.index(item), **fields)

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event


def _snapshot(value: Any) -> Any:
    """A deep copy of an item as it is now (events must not change when the item grows)."""
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    return value
