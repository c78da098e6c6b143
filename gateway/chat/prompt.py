"""Shape the upstream prompt for the account reserved: the one stage that decides what Kimi reads.

A new chat gets the flattened history (gateway/openai/flatten.py); a continued chat only the newest user
message (with client tools: what followed the last answer, tool results included); the answered
message's files are uploaded to this account. A very long history (above
``KIMIPROXY_PROMPT_ATTACH_BYTES``, or after Kimi refused the prompt as too long, protocol doc C.2 and
C.9) goes up as an attached ``.txt`` file instead, while the system text and the message to answer stay
inline, and the message says so. A native continuation (gateway/chat/native.py) gets only the messages
after the last answer and the tool reminder: the chat already holds the rest, instructions included.

Client tools (gateway/tools/README.md): the tool instructions go with the system text, the history's
calls in the envelope and its results escaped, and the reminder after the message to answer (and the
results that follow it). Such a turn is plain chat upstream: no agent scenario or research, search only
when the model asked for it, since the client runs the tools. ``response_format``: the JSON output
instructions go with the system text too.
"""

from __future__ import annotations

import dataclasses

from django.conf import settings

from gateway.chat.turn import Job, Turn
from gateway.kimi.base import FileBlob, KimiSession, TurnRequest
from gateway.kimi.uploads import upload_cached
from gateway.openai.flatten import (
    INSTRUCTION_ROLES,
    flatten_history,
    flatten_tail,
    history_calls,
    last_user_text,
    transcript,
)
from gateway.tools.prompt import tools_prompt, tools_reminder
from gateway.tools.structured import json_instructions

HISTORY_FILE = "conversation-history.txt"
HISTORY_NOTE = (
    f"The earlier conversation is in the attached file {HISTORY_FILE}; read it first, then answer the "
    "latest message below in its context."
)


def prompt_text(turn: Turn) -> str:
    """The whole history as one upstream message (what a new chat gets; logged and counted)."""
    if not any(m.role == "user" for m in turn.messages):
        # Only a continued chat may come without a user message (Responses: a stored response continued
        # with tool outputs); what it sends is what follows the answer the chat already holds.
        return _continued_text(turn)
    preamble, reminder = _tool_texts(turn)
    return flatten_history(turn.messages, tools=turn.tools, nonce=turn.tool_nonce, preamble=preamble, reminder=reminder)


def _tool_texts(turn: Turn) -> tuple[str, str]:
    """What goes after the system text (tool instructions, the JSON output format) and the tool
    reminder that goes last (empty without offered tools)."""
    fmt = json_instructions(turn.response_format) if turn.response_format else ""
    if turn.tools is None or not turn.offers_tools:
        return fmt, ""
    nonce = turn.tool_nonce
    preamble = "\n\n".join(s for s in (tools_prompt(turn.tools, nonce=nonce), fmt) if s)
    return preamble, tools_reminder(turn.tools, nonce=nonce)


def history_attachable(job: Job) -> bool:
    """A new chat with earlier turns to move into a file (a continued chat sends only its new message)."""
    return job.continued is None and _earlier_turns(job.turn) != ()


def attach_up_front(job: Job) -> bool:
    """Whether the flattened prompt is too long to send inline (UTF-8 bytes, not characters)."""
    limit = settings.KIMIPROXY_PROMPT_ATTACH_BYTES
    return history_attachable(job) and len(job.prompt_text.encode()) > limit


async def upstream_turn(
    job: Job, *, session: KimiSession, account_id: int, attach_history: bool = False
) -> TurnRequest:
    """The turn to send on this account: its text, its files (uploaded here, once per account) and,
    for a continued chat, where to continue (protocol doc 2.9: Connect needs the parent message id)."""
    blobs = list(job.blobs)
    text = job.prompt_text
    if job.native is not None:
        text = _native_text(job.turn)
    elif job.continued is not None:
        text = _continued_text(job.turn)
    elif attach_history:
        text, history = _split_history(job.turn)
        blobs.insert(0, history)
    files = tuple([await upload_cached(session=session, account_id=account_id, blob=b) for b in blobs])
    request = job.turn.model.turn_request(text=text, files=files, reasoning_effort=job.turn.reasoning_effort)
    if job.turn.offers_tools:
        request = dataclasses.replace(request, agent_id=None, research=False)
    if job.continued is None:
        return request
    continued = job.continued
    return dataclasses.replace(request, chat_id=continued.chat_id, parent_id=continued.parent_message_id or None)


def repair_turn(job: Job, *, chat_id: str, parent_id: str, text: str) -> TurnRequest:
    """A repair turn (gateway/chat/repair.py): ``text`` in the chat that holds the answer to repair,
    after that answer; plain chat like every client-tools turn."""
    turn = job.turn
    request = turn.model.turn_request(text=text, files=(), reasoning_effort=turn.reasoning_effort)
    return dataclasses.replace(request, chat_id=chat_id, parent_id=parent_id or None, agent_id=None, research=False)


def _continued_text(turn: Turn) -> str:
    """A continued chat holds the history: the newest user message, or with client tools what came
    after the last answer (tool results included) with the tool texts around it."""
    if not turn.offers_tools:
        return last_user_text(turn.messages)
    preamble, reminder = _tool_texts(turn)
    return flatten_tail(turn.messages, tools=turn.tools, nonce=turn.tool_nonce, preamble=preamble, reminder=reminder)


def _native_text(turn: Turn) -> str:
    """A native continuation (gateway/chat/native.py): the chat holds the history and the tool
    instructions under the same nonce, so only the new messages go, with the short tool reminder."""
    _, reminder = _tool_texts(turn)
    tools = turn.tools if turn.offers_tools else None
    return flatten_tail(turn.messages, tools=tools, nonce=turn.tool_nonce, reminder=reminder)


def _earlier_turns(turn: Turn) -> tuple[int, ...]:
    """Indexes of the messages that go into the history file: every turn before the last user message."""
    last = max(i for i, m in enumerate(turn.messages) if m.role == "user")
    return tuple(i for i, m in enumerate(turn.messages) if i < last and m.role not in INSTRUCTION_ROLES)


def _split_history(turn: Turn) -> tuple[str, FileBlob]:
    """The inline message (system text, a note about the file, the latest message and what follows it)
    and the earlier turns as a text file."""
    earlier = set(_earlier_turns(turn))
    tools, nonce, calls = turn.tools, turn.tool_nonce, history_calls(turn.messages)
    preamble, reminder = _tool_texts(turn)
    history = transcript(
        [m for i, m in enumerate(turn.messages) if i in earlier], tools=tools, nonce=nonce, calls=calls
    )
    inline = [m for i, m in enumerate(turn.messages) if i not in earlier]
    texts = [m.text for m in inline if m.role in INSTRUCTION_ROLES and m.text.strip()]
    instructions = "\n\n".join(s for s in (*texts, preamble) if s)
    rest = [m for m in inline if m.role not in INSTRUCTION_ROLES]
    latest = flatten_history(rest, tools=tools, nonce=nonce, reminder=reminder, calls=calls)
    text = "\n\n".join(s for s in (instructions, HISTORY_NOTE, latest) if s)
    return text, FileBlob(name=HISTORY_FILE, mime_type="text/plain", data=history.encode())
