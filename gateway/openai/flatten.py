"""A message history -> the ONE upstream user message Kimi reads (protocol doc 0.2 and 1.8).

Kimi's web chat takes one user message per turn, so a client's whole ``messages`` array is flattened:

    <system and developer texts, in order, separated by blank lines>

    user: first question
    assistant: first answer

    Latest message from user (answer this one):
    the last user message

Messages after the last user message (an assistant's tool call, tool results) follow it as
``role: content`` lines. Attachments of earlier messages are mentioned by name or URL
(``[image: https://...]``); those of the last user message are uploaded instead, not mentioned.
A lone user message is sent exactly as written. When an upstream conversation is continued, the
upstream already holds the history: send ``last_user_text(messages)`` only.

With client tools offered (``tools``; gateway/tools/README.md), an assistant's calls are rendered in the
call envelope with this request's ``nonce`` and each tool result as an escaped ``<tool_result>``, so an
envelope inside a result never reaches the model verbatim; the prompt stage (gateway/chat/prompt.py) adds
the tool instructions and the reminder around it. Without, calls are ``[called tool NAME with ARGS]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.openai.messages import Message
from gateway.tools.prompt import calls_by_id, render_calls, render_tool_result
from gateway.tools.spec import ToolCall, ToolSet

LATEST_HEADING = "Latest message from user (answer this one):"
INSTRUCTION_ROLES = ("system", "developer")


def flatten_history(
    messages: Sequence[Message],
    *,
    tools: ToolSet | None = None,
    nonce: str = "",
    preamble: str = "",
    reminder: str = "",
    calls: Mapping[str, ToolCall] | None = None,
) -> str:
    """The upstream prompt for a new chat (see the module docstring for the layout). ``preamble`` goes
    after the system texts and ``reminder`` last (the tool instructions); ``calls`` are the history's
    calls by id (default: those in ``messages``)."""
    last = _last_user_index(messages)
    if len(messages) == 1 and not preamble and not reminder:
        return messages[0].text
    render = _Render(messages, tools=tools, nonce=nonce, calls=calls)
    instructions = [m.text for m in messages if m.role in INSTRUCTION_ROLES and m.text.strip()]
    turns = [(i, m) for i, m in enumerate(messages) if m.role not in INSTRUCTION_ROLES]
    before = [render.line(m) for i, m in turns if i < last]
    after = [render.line(m) for i, m in turns if i > last]
    sections = [
        "\n\n".join(s for s in (*instructions, preamble) if s),
        "\n".join(before),
        f"{LATEST_HEADING}\n{messages[last].text}",
        "\n".join(after),
        reminder,
    ]
    return "\n\n".join(s for s in sections if s)


def transcript(
    messages: Sequence[Message],
    *,
    tools: ToolSet | None = None,
    nonce: str = "",
    calls: Mapping[str, ToolCall] | None = None,
) -> str:
    """Messages as ``role: content`` lines, nothing marked: an earlier history sent as a file."""
    render = _Render(messages, tools=tools, nonce=nonce, calls=calls)
    return "\n".join(render.line(m) for m in messages)


def flatten_tail(
    messages: Sequence[Message], *, tools: ToolSet | None, nonce: str, preamble: str = "", reminder: str = ""
) -> str:
    """What a continued chat with client tools gets: the messages after the last assistant message (the
    new question, or the results of the calls the upstream chat already holds), between the tool
    instructions (again: this request has its own nonce) and the reminder."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    tail = [m for m in messages[last + 1 :] if m.role not in INSTRUCTION_ROLES]
    render = _Render(messages, tools=tools, nonce=nonce, calls=None)
    if not tail:  # the client ended with an assistant message: answer the newest question again
        tail = [messages[_last_user_index(messages)]]
    body = "\n".join(m.text if m.role == "user" and len(tail) == 1 else render.line(m) for m in tail)
    return "\n\n".join(s for s in (preamble, body, reminder) if s)


def last_user_text(messages: Sequence[Message]) -> str:
    """The newest user message alone: what to send when continuing an upstream chat."""
    return messages[_last_user_index(messages)].text


def _last_user_index(messages: Sequence[Message]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    raise ValueError("no user message")  # parse_chat_request refuses such requests


def history_calls(messages: Sequence[Message]) -> dict[str, ToolCall]:
    """Every assistant call of the history by id (what a tool result is rendered beside)."""
    return calls_by_id([c for m in messages for c in m.tool_calls])


class _Render:
    """``role: content`` lines; with tools offered, calls in the envelope and results escaped."""

    def __init__(
        self,
        messages: Sequence[Message],
        *,
        tools: ToolSet | None,
        nonce: str,
        calls: Mapping[str, ToolCall] | None,
    ) -> None:
        self.tools = tools if tools is not None and tools.offered else None
        self.nonce = nonce
        self.calls = calls if calls is not None else (history_calls(messages) if self.tools else {})

    def line(self, message: Message) -> str:
        label = f"{message.role} ({message.name})" if message.name else message.role
        if self.tools is not None and message.role == "tool":
            call_id = message.tool_call_id or ""
            result = render_tool_result(call_id=call_id, content=message.text, call=self.calls.get(call_id))
            return f"{label}: {result}"
        mentions = [f"[{a.kind}: {a.label}]" for a in message.attachments]
        body = " ".join(filter(None, [message.text, *mentions]))
        if message.tool_calls and self.tools is not None:
            body = "\n".join(filter(None, [body, render_calls(message.tool_calls, tools=self.tools, nonce=self.nonce)]))
        elif message.tool_calls:
            body = "\n".join(filter(None, [body, *(_called(c) for c in message.tool_calls)]))
        return f"{label}: {body}"


def _called(call: ToolCall) -> str:
    """A call as the history showed it before tools were emulated (and still does without tools)."""
    return f"[called tool {call.name} with {call.arguments}]"
