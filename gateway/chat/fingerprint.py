"""Fingerprints of a conversation as the model saw it, for native multi-turn (gateway/chat/native.py).

A stateless client resends its whole history each turn. To continue the upstream chat instead of
flattening the history into a new one, the gateway must know, without guessing, that the history it is
sent now is exactly the one that chat holds plus new turns. It keeps, for each kept chat, a fingerprint
of what that chat holds: a hash chain over the normalised messages and the answer the gateway gave.

Normalised means what the model sees, not how the client's API carried it: the role (system and
developer are one), the text (line endings unified, outer whitespace dropped), the attachments by label,
tool calls by name and arguments (JSON arguments compared as values, not as text), a tool result's text
and the call it answers. Ids are left out (clients rewrite ids the gateway did not issue, and a result
is matched to its call by the call's name and arguments beside it, as the prompt renders it), and so is
everything a client may send differently each time for the same conversation: reasoning, thinking
signatures, cache hints, metadata.

The chain starts from a seed that holds what frames the whole conversation: the front door, the model
served, the tools offered (name, kind, description, schema) and the JSON output asked for. So a changed
tool list or another model never matches, and nor does the same history sent through another door.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import orjson

from gateway.openai.messages import Message
from gateway.tools.spec import ToolCall, ToolSet
from gateway.tools.structured import ResponseFormat

_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def _text(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


def _arguments(call: ToolCall) -> object:
    """JSON arguments as a value (key order and spacing do not matter); a custom tool's raw input as text."""
    if call.kind == "function":
        try:
            return orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            pass
    return _text(call.arguments)


def normalised(message: Message, calls: dict[str, ToolCall]) -> bytes:
    """One message as the model sees it (see the module docstring). ``calls``: the history's calls by
    id, so a tool result is tied to the call it answers by that call's content, not by its id."""
    item: list[object] = [_ROLE.get(message.role, message.role), _text(message.text)]
    item.append([a.label for a in message.attachments])
    item.append([[c.name, c.kind, _arguments(c)] for c in message.tool_calls])
    if message.role == "tool":
        answered = calls.get(message.tool_call_id or "")
        item.append([answered.name, _arguments(answered)] if answered else message.name or "")
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def seed(*, door: str, model: str, tools: ToolSet | None, response_format: ResponseFormat | None) -> str:
    """The start of the chain: what frames the whole conversation."""
    offered = [
        [t.name, t.kind, _text(t.description), t.parameters, t.grammar] for t in (tools.offered if tools else ())
    ]
    frame = [door, model, offered, repr(response_format) if response_format else ""]
    return hashlib.sha256(orjson.dumps(frame, option=orjson.OPT_SORT_KEYS)).hexdigest()


def chain(start: str, messages: Sequence[Message]) -> list[str]:
    """The fingerprint after each message: ``chain(s, m)[i]`` covers ``m[: i + 1]``."""
    calls = {c.id: c for m in messages for c in m.tool_calls if c.id}
    out: list[str] = []
    digest = start
    for message in messages:
        digest = hashlib.sha256(digest.encode() + b"\x00" + normalised(message, calls)).hexdigest()
        out.append(digest)
    return out
