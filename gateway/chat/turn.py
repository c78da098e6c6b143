"""The protocol-neutral hand-offs of the turn pipeline: what a front door asks for (``Turn``) and what
accept hands to the rest of the pipeline (``Job``). Both are frozen: no stage changes another's input.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gateway.kimi.base import FileBlob, ReasoningEffort
from gateway.models import ApiKey
from gateway.openai.messages import Attachment, Message
from gateway.openai.model_names import ModelSpec
from gateway.records.callers import Caller
from gateway.records.conversations import ContinuedConversation
from gateway.tools.spec import ToolSet
from gateway.tools.structured import ResponseFormat

if TYPE_CHECKING:
    from gateway.chat.native import NativeMatch


@dataclasses.dataclass(frozen=True)
class Turn:
    """One request as a front door parsed it, in no API's shape.

    ``messages`` is the history (system texts included), ``files`` the attachments of the message the
    reply answers (uploaded to the account that serves it). ``keep`` keeps the upstream chat for a later
    continuation; ``continue_chat`` is the kept chat this request continues; ``continue_stored`` a
    stored response (records/responses.py) whose kept chat it continues (``previous_response_id``).
    ``reasoning_effort`` is how much the client asked the model to reason, on the scale every door maps
    onto. ``tools`` are the client's tools (gateway/tools/), ``tool_nonce`` the envelope id of this
    request (the prompt and the parser use the same one); ``response_format`` the JSON output asked for.
    ``log_flags`` are the door's own notes for the log row.

    Housekeeping that must not spend an upstream turn: ``local_answer`` (not None) is answered by the
    gateway itself with that text, whoever asks (``count_tokens``); ``probe`` marks a client's probe
    (``max_tokens`` <= 1 on the Messages / Responses doors), answered locally with an empty text when
    the caller's key allows it (``ApiKey.local_probes``, on by default). Both are logged as ``local``.
    """

    model: ModelSpec
    messages: tuple[Message, ...]
    files: tuple[Attachment, ...] = ()
    stream: bool = False
    keep: bool = False
    continue_chat: str | None = None
    continue_stored: str | None = None
    user: str = ""
    reasoning_effort: ReasoningEffort | None = None  # None: the model's own default (kimi/base.py)
    tools: ToolSet | None = None
    tool_nonce: str = ""
    response_format: ResponseFormat | None = None
    local_answer: str | None = None
    probe: bool = False
    session_hint: str = ""  # a client's conversation id from the body (prompt_cache_key); native multi-turn
    log_flags: tuple[str, ...] = ()

    @property
    def offers_tools(self) -> bool:
        """The model is told about tools (some declared, and ``tool_choice`` is not ``none``)."""
        return self.tools is not None and bool(self.tools.offered)


@dataclasses.dataclass(frozen=True)
class Job:
    """An accepted request: who asked, what for, with its log row and its files, ready to be served."""

    request_id: str
    log_id: int
    caller: Caller
    api_key: ApiKey | None
    turn: Turn
    prompt_text: str  # the flattened history, as logged and counted for usage
    started: float  # time.monotonic() when the request arrived
    blobs: tuple[FileBlob, ...] = ()
    continued: ContinuedConversation | None = None
    flags: tuple[str, ...] = ()  # as logged on accept
    door: str = ""  # the front door's name (native multi-turn states belong to one door)
    native_on: bool = False  # this caller's turns keep their chats for native continuation
    native: NativeMatch | None = None  # the kept chat this request continues natively
    native_flag: str = ""  # which path served it (native / flattened:<why>), for the final log row
    native_hint: str = ""  # the client's session hint, hashed (gateway/chat/native.py)

    @property
    def keep(self) -> bool:
        return self.turn.keep

    @property
    def answered_locally(self) -> bool:
        """No upstream call for this request: the gateway answers it (``Turn.local_answer`` / ``probe``)."""
        if self.turn.local_answer is not None:
            return True
        return self.turn.probe and (self.api_key is None or self.api_key.local_probes)

    @property
    def local_text(self) -> str:
        return self.turn.local_answer or ""
