"""What the fake stores and records. Plain dataclasses; ``FakeKimi`` guards them with its lock."""

from __future__ import annotations

import dataclasses
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class FakeAccount:
    """An account as a test sees it. ``repr`` never shows a token."""

    name: str
    protocol: str
    user_id: str
    refresh_token: str = dataclasses.field(repr=False)
    access_token: str = dataclasses.field(repr=False)
    paid: bool = False
    deployment: str = "kimi.com"  # which deployment issued the tokens (kimi-web-protocol.md C.5)


@dataclasses.dataclass
class AccountState:
    """The fake's own view of an account: its secret and which tokens are still valid."""

    name: str
    protocol: str
    user_id: str
    paid: bool
    deployment: str
    access_ttl: int
    refresh_ttl: int
    secret: bytes = dataclasses.field(repr=False)
    identity: dict[str, Any]
    access_token: str = dataclasses.field(default="", repr=False)
    refresh_token: str = dataclasses.field(default="", repr=False)
    access_jtis: dict[str, None] = dataclasses.field(default_factory=dict)  # ordered set
    # refresh jti -> monotonic deadline (None = current token, valid until its exp)
    refresh_jtis: dict[str, float | None] = dataclasses.field(default_factory=dict)
    research_used: int = 0

    def public(self) -> FakeAccount:
        return FakeAccount(
            self.name, self.protocol, self.user_id, self.refresh_token, self.access_token, self.paid, self.deployment
        )


@dataclasses.dataclass
class Call:
    """One request the fake received. ``body`` never holds a token; ``headers`` is a subset."""

    protocol: str
    kind: str
    account: str | None
    path: str
    body: Any
    headers: dict[str, str]
    upload: bytes | None = None
    at: float = dataclasses.field(default_factory=time.time)
    status: int = 200
    deployment: str = "kimi.com"  # the deployment (port) the call reached (C.5)

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        upload = data.pop("upload")
        data["upload_size"] = None if upload is None else len(upload)
        return data


@dataclasses.dataclass
class MessageRecord:
    id: str
    parent_id: str
    role: str
    text: str = ""
    thinking: str = ""
    status: str = "MESSAGE_STATUS_COMPLETED"
    files: list[str] = dataclasses.field(default_factory=list)
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass
class ChatRecord:
    id: str
    account: str
    protocol: str
    name: str
    messages: list[MessageRecord] = dataclasses.field(default_factory=list)
    deleted: bool = False
    created_at: float = dataclasses.field(default_factory=time.time)
    # Segment the legacy `length` event left open (doc 1.19.3), for `action: "continue"`.
    open_segment: str | None = None

    def message(self, message_id: str) -> MessageRecord | None:
        return next((m for m in self.messages if m.id == message_id), None)

    def snapshot(self) -> ChatRecord:
        copy = dataclasses.replace(self, messages=[dataclasses.replace(m) for m in self.messages])
        return copy


@dataclasses.dataclass
class FileRecord:
    id: str
    account: str
    name: str
    content_type: str
    data: bytes = dataclasses.field(repr=False)
    sha256: str
    failed: bool = False
    created_at: float = dataclasses.field(default_factory=time.monotonic)
    ready_at: float = 0.0
    polls: int = 0
    object_name: str = ""
    kind: str = "file"  # legacy: "file" | "image"
    registered: bool = False  # legacy: POST /api/file was called
