"""The one small interface between the gateway and Kimi's web chat.

Nothing outside ``gateway/kimi/`` knows a Kimi URL, header or payload. Callers build a session for an
account (``gateway.kimi.session_for``), then::

    async with session.turn(request) as events:
        async for event in events:
            ...

Events are the normalised stream (see the dataclasses below). Failures are exceptions from the tree
below, raised either when the turn opens (before the first event) or while iterating (mid-stream).
What the upstream sent that the client did not understand (unknown frame kinds, ``mask`` paths, error
reasons, unmapped citation markers) is not an event: it is counted in ``session.drift``
(gateway/kimi/drift.py), which the caller reads once, when the request ends.

Error tree (``retryable`` says whether another account may succeed; ``refundable`` says whether the
upstream did no generation work, so the turn should not count against the account's limit)::

    KimiError
     ├── AuthError              token rejected after one refresh; account becomes invalid
     ├── RateLimited            quota / usage limit hit (reset_at or retry_after when known; quota=True
     │                          for an explicit quota refusal, False for a bare HTTP 429, C.13)
     ├── Overloaded             upstream too busy (Connect resource_exhausted for free users, completion overload)
     ├── StreamBusy             the chat is already generating an answer
     ├── Unavailable            5xx, HTTP 429 with an empty body, connection refused/reset
     │    └── RefreshRefused    a refresh refused without saying the token is dead (C.11): cool down
     ├── UpstreamTimeout
     │    ├── ConnectTimeout
     │    ├── FirstByteTimeout
     │    ├── IdleTimeout       no bytes at all (heartbeats reset it)
     │    └── NoProgressTimeout no text/thinking/tool event (heartbeats do not reset it)
     ├── ContentFiltered        the answer was stopped or retracted by Kimi's filter
     ├── BadRequest             the upstream refused our request (unknown chat, bad file, ...)
     │    ├── ChatNotFound      continuing a chat that does not exist (any more)
     │    └── ContextTooLong    the prompt is longer than the chat accepts (refunded; no failover)
     ├── FileRejected           upload or parse of a client file failed
     └── ProtocolError          the upstream answered something we cannot parse; stream cut without an end
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import ClassVar, Literal, Protocol

from gateway.kimi.drift import Drift

# --------------------------------------------------------------------------------------------------
# Requests

ReasoningEffort = Literal["none", "low", "high"]


@dataclasses.dataclass(frozen=True)
class FileRef:
    """An uploaded file as the upstream knows it; pass it back in ``TurnRequest.files``."""

    file_id: str
    name: str
    kind: Literal["file", "image"]
    size: int = 0
    # Protocol-specific extras the client needs to reference the file again (never shown to users).
    extra: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class FileBlob:
    """Bytes a client sent us (downloaded or decoded from base64), ready to upload."""

    name: str
    mime_type: str
    data: bytes

    @property
    def kind(self) -> Literal["file", "image"]:
        return "image" if self.mime_type.startswith("image/") else "file"


@dataclasses.dataclass(frozen=True)
class TurnRequest:
    """One user turn sent upstream.

    ``text`` is the user's message (or the flattened history). ``chat_id`` continues an existing
    upstream chat; Connect also needs ``parent_id`` (the last assistant message id, protocol doc 2.9).
    Flags a protocol lacks are ignored by its client (and listed by ``unsupported_flags``).

    ``reasoning_effort`` is how much the client asked the model to reason, on a scale every front door
    maps onto (OpenAI ``reasoning_effort``, Responses ``reasoning.effort``, Anthropic ``thinking``);
    None means "the model's own default": reasoning for a thinking model, none otherwise.
    """

    text: str
    files: tuple[FileRef, ...] = ()
    search: bool = False
    thinking: bool = False
    reasoning_effort: ReasoningEffort | None = None
    research: bool = False
    math: bool = False
    agent_id: str | None = None  # legacy Kimi+ agent id, or "kimi-agent" for Connect's agent scenario
    model: str | None = None  # Connect upstream model id, e.g. "k2d6-chat"; None = the catalogue's default (C.7)
    chat_id: str | None = None
    parent_id: str | None = None

    @property
    def reasons(self) -> bool:
        """Whether the client asked for reasoning. When it did not, reasoning the upstream sends anyway
        is not shown (kimi-web-protocol.md C.6)."""
        return self.reasoning_effort != "none" if self.reasoning_effort is not None else self.thinking


# --------------------------------------------------------------------------------------------------
# Events


@dataclasses.dataclass(frozen=True)
class ChatCreated:
    """The upstream chat id is known (new or continued). Record it before anything else."""

    chat_id: str


@dataclasses.dataclass(frozen=True)
class TextDelta:
    text: str


@dataclasses.dataclass(frozen=True)
class ThinkingDelta:
    text: str


@dataclasses.dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str = ""
    site: str = ""


@dataclasses.dataclass(frozen=True)
class SearchResults:
    """Search results as they become known; ``results`` are new ones, in reference order (1-based)."""

    results: tuple[SearchResult, ...]


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """The upstream is alive but has nothing new (lets the gateway send an SSE keep-alive)."""


@dataclasses.dataclass(frozen=True)
class Done:
    """Generation finished. ``message_id`` is the assistant message id (Connect's next ``parent_id``)."""

    finish_reason: Literal["stop", "length", "content_filter"] = "stop"
    message_id: str | None = None


KimiEvent = ChatCreated | TextDelta | ThinkingDelta | SearchResults | Heartbeat | Done


# --------------------------------------------------------------------------------------------------
# Errors


class KimiError(Exception):
    """Base of every upstream failure. ``code`` is our stable name for the kind of failure."""

    code: ClassVar[str] = "upstream_error"
    retryable: ClassVar[bool] = False
    refundable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, upstream_code: str = "", status: int | None = None):
        super().__init__(message or self.code)
        self.message = message or self.code
        self.upstream_code = upstream_code
        self.status = status


class AuthError(KimiError):
    code = "auth"
    retryable = True
    refundable = True


class RateLimited(KimiError):
    """The account may not take a turn until ``reset_at`` (the upstream's own time) or for ``retry_after``
    seconds, when the upstream said. ``quota`` says whether the refusal named the account's quota
    (kimi-web-protocol.md C.13): only such a refusal is evidence of the account's limit; a bare HTTP 429
    with ``Retry-After`` may be an overload at the edge."""

    code = "rate_limited"
    retryable = True
    refundable = True

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        reset_at: datetime | None = None,
        quota: bool = False,
        **kwargs: object,
    ):
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.reset_at = reset_at
        self.quota = quota


class Overloaded(KimiError):
    code = "overloaded"
    retryable = True
    refundable = True


class StreamBusy(KimiError):
    code = "stream_busy"
    retryable = True
    refundable = True


class Unavailable(KimiError):
    code = "unavailable"
    retryable = True
    refundable = True


class RefreshRefused(Unavailable):
    """The refresh was refused (400/403/5xx, an HTML page) without the explicit dead-token answer
    (kimi-web-protocol.md C.11): a filter or a changed request shape, not proof the token is dead.
    The account cools down; only repeated refusals mark it invalid (``gateway.kimi.tokens``)."""

    code = "refresh_refused"


class UpstreamTimeout(KimiError):
    code = "timeout"
    retryable = True
    refundable = True


class ConnectTimeout(UpstreamTimeout):
    code = "connect_timeout"


class FirstByteTimeout(UpstreamTimeout):
    code = "first_byte_timeout"


class IdleTimeout(UpstreamTimeout):
    code = "idle_timeout"
    refundable = False


class NoProgressTimeout(UpstreamTimeout):
    code = "no_progress_timeout"
    refundable = False


class ContentFiltered(KimiError):
    code = "content_filtered"


class BadRequest(KimiError):
    code = "bad_request"


class ChatNotFound(BadRequest):
    code = "chat_not_found"


class ContextTooLong(BadRequest):
    """The prompt is too long for the chat (protocol doc C.2): not an overload, so no other account
    would do better; the upstream did no work, so the turn is refunded."""

    code = "context_too_long"
    refundable = True


class FileRejected(KimiError):
    code = "file_rejected"


class ProtocolError(KimiError):
    code = "protocol_error"
    retryable = True


# --------------------------------------------------------------------------------------------------
# The session interface


class TokenSource(Protocol):
    """Gives a session its access token; backed by the database cache (gateway/kimi/tokens.py)."""

    async def access_token(self, *, rejected: str | None = None) -> str:
        """Return a usable access token. ``rejected`` is a token the upstream just refused with a 401:
        the source refreshes unless another worker already replaced it. Raises AuthError when the
        refresh token itself is rejected (and marks the account invalid)."""
        ...

    async def refresh_now(self) -> str:
        """Refresh even if the cached token is still good and return the new one (``session.check()``).
        An account without a refresh token returns its access token while it lasts. Raises AuthError."""
        ...


class KimiSession(Protocol):
    """One account's view of the upstream. Built by ``gateway.kimi.session_for(account, ...)``."""

    protocol: ClassVar[str]
    # What this session's turns received and did not understand, counted in memory (redacted samples);
    # the caller stores it once with the request's final write (gateway/records/drift.py).
    drift: Drift

    def turn(self, request: TurnRequest) -> AbstractAsyncContextManager[AsyncIterator[KimiEvent]]:
        """Open one chat turn. Entering sends the request (refreshing and retrying once on a 401);
        iterating yields events until ``Done``; leaving closes the upstream stream."""
        ...

    async def delete_chat(self, chat_id: str) -> None:
        """Delete an upstream chat. Deleting a chat that no longer exists is not an error."""
        ...

    async def upload(self, blob: FileBlob) -> FileRef:
        """Upload a file and wait until the upstream has parsed it (FileRejected on failure/timeout)."""
        ...

    async def check(self) -> bool:
        """Refresh the access token and report whether the account is live (False on AuthError)."""
        ...

    @staticmethod
    def unsupported_flags(request: TurnRequest) -> list[str]:
        """Names of request flags this protocol ignores (logged by the caller)."""
        ...
