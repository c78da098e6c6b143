"""Shared cases for the tool-core tests: declared tools, a parser run over pieces, and its result."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable

from gateway.tools.parser import BlockClosed, CallReady, CallStarted, Event, Finish, Text, ToolCallParser
from gateway.tools.spec import ToolCall, ToolChoice, ToolSet, ToolSpec

NONCE = "n0nce42"
WEATHER = ToolSpec(
    name="get_weather",
    description="Weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)
WRITE = ToolSpec(
    name="write_file",
    description="Write a file.",
    parameters={
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "content": {"type": "string"},
            "overwrite": {"type": "boolean"},
            "mode": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "options": {
                "type": "object",
                "properties": {"indent": {"type": "integer"}, "ratio": {"type": "number"}, "eol": {"type": "string"}},
            },
        },
        "required": ["path", "content"],
    },
)
PATCH = ToolSpec(name="apply_patch", description="Apply a patch.", kind="custom")
TOOLS = (WEATHER, WRITE, PATCH)


def toolset(mode: str = "auto", *, names: tuple[str, ...] = (), parallel: bool = True) -> ToolSet:
    return ToolSet(tools=TOOLS, choice=ToolChoice(mode=mode, names=names), parallel=parallel)  # type: ignore[arg-type]


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"call_{next(numbers):024d}"


@dataclasses.dataclass
class Run:
    parser: ToolCallParser
    events: list[Event]
    finish: Finish
    max_held: int

    @property
    def text(self) -> str:
        """Everything forwarded as text, through finish."""
        return "".join(e.text for e in [*self.events, *self.finish.events] if isinstance(e, Text))

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return self.finish.calls

    @property
    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in [*self.events, *self.finish.events] if not isinstance(e, Text)]

    def arguments(self) -> list[tuple[str, str]]:
        return [(c.name, c.arguments) for c in self.calls]


def run(pieces: Iterable[str] | str, tools: ToolSet | None = None, *, nonce: str = NONCE, reasoning: str = "") -> Run:
    if isinstance(pieces, str):
        pieces = [pieces]
    parser = ToolCallParser(toolset() if tools is None else tools, nonce=nonce, new_id=counter_ids())
    events: list[Event] = []
    max_held = 0
    for piece in pieces:
        events += parser.feed(piece)
        max_held = max(max_held, len(parser.held))
    return Run(parser=parser, events=events, finish=parser.finish(reasoning=reasoning), max_held=max_held)


def split_every(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def envelope(*invokes: str, nonce: str | None = NONCE) -> str:
    head = "<tool_calls>" if nonce is None else f'<tool_calls id="{nonce}">'
    return head + "\n" + "\n".join(invokes) + "\n</tool_calls>"


def invoke(name: str, **params: str) -> str:
    inner = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<invoke name="{name}">\n{inner}</invoke>'


__all__ = ["BlockClosed", "CallReady", "CallStarted", "Text"]
