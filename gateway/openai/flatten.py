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
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.openai.messages import Message

LATEST_HEADING = "Latest message from user (answer this one):"
INSTRUCTION_ROLES = ("system", "developer")


def flatten_history(messages: Sequence[Message]) -> str:
    """The upstream prompt for a new chat (see the module docstring for the layout)."""
    last = _last_user_index(messages)
    if len(messages) == 1:
        return messages[0].text
    instructions = [m.text for m in messages if m.role in INSTRUCTION_ROLES and m.text.strip()]
    turns = [(i, m) for i, m in enumerate(messages) if m.role not in INSTRUCTION_ROLES]
    before = [_line(m) for i, m in turns if i < last]
    after = [_line(m) for i, m in turns if i > last]
    sections = [
        "\n\n".join(instructions),
        "\n".join(before),
        f"{LATEST_HEADING}\n{messages[last].text}",
        "\n".join(after),
    ]
    return "\n\n".join(s for s in sections if s)


def transcript(messages: Sequence[Message]) -> str:
    """Messages as ``role: content`` lines, nothing marked: an earlier history sent as a file."""
    return "\n".join(_line(m) for m in messages)


def last_user_text(messages: Sequence[Message]) -> str:
    """The newest user message alone: what to send when continuing an upstream chat."""
    return messages[_last_user_index(messages)].text


def _last_user_index(messages: Sequence[Message]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    raise ValueError("no user message")  # parse_chat_request refuses such requests


def _line(message: Message) -> str:
    label = f"{message.role} ({message.name})" if message.name else message.role
    mentions = [f"[{a.kind}: {a.label}]" for a in message.attachments]
    body = " ".join(filter(None, [message.text, *mentions]))
    return f"{label}: {body}"
