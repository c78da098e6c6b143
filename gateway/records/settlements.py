"""What a request's final write settles, as plain data: the log row's last fields (``LogFinish``), the
lease of the last attempt (``LeaseSettlement``) and the fate of its upstream chat
(``ConversationSettlement``). The ORM service (records/logs.py ``request_finish``) and the one-statement
path on PostgreSQL (gateway/db/finish_sql.py) both take these.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from accounts.pool import Lease


@dataclasses.dataclass(frozen=True)
class ToolRecord:
    """What the log row records about client tools (gateway/tools/parser.py ``ParseStats``): tools
    declared, whether a call block was seen, the parse outcome (empty: no tools declared), calls
    returned, and names the model called that were not offered."""

    declared: int = 0
    block_seen: bool = False
    outcome: str = ""
    calls: int = 0
    unknown_names: tuple[str, ...] = ()


@dataclasses.dataclass
class LogFinish:
    status_code: int
    outcome: str
    error_code: str = ""
    error_message: str = ""
    latency_ms: int | None = None
    ttft_ms: int | None = None
    attempts: int = 0
    account_id: int | None = None
    completion_chars: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_chat_id: str = ""
    answer_preview: str = ""
    flags: list[str] | None = None  # replaces the accept-time flags (adds what the upstream ignored)
    tools: ToolRecord = ToolRecord()
    repairs: int = 0  # extra upstream turns spent repairing the answer
    turn_path: str = ""  # native multi-turn: "native" / "flattened" ("" with the mode off)
    prompt_bytes_saved: int = 0  # a native continuation's flattened prompt minus what it sent


@dataclasses.dataclass(frozen=True)
class LeaseSettlement:
    """How to release the lease of the last attempt (earlier attempts were released as they failed)."""

    lease: Lease
    outcome: str  # a LeaseOutcome (accounts/choices.py), not the log row's Outcome
    refund: bool = False
    retry_after: float | None = None
    message: str = ""
    reset_at: datetime | None = None  # a rate limit's reset time, when the upstream gave one
    quota: bool = False  # an explicit quota refusal (accounts/pool/rules.py learns from it)


@dataclasses.dataclass(frozen=True)
class ConversationSettlement:
    """What becomes of the request's upstream chat: kept, or already deleted upstream (``deleted``),
    or its delete failed (``delete_error``), or neither yet (queued for deletion)."""

    conversation_id: int
    keep: bool
    parent_message_id: str = ""
    deleted: bool = False
    delete_error: str = ""
