"""What the Connect catalogue names (kimi-web-protocol.md 2.7, 2.7.1, 2.13, C.8); the rest is drift.

``note_frame(payload, drift)`` notes, for one data frame, every top-level key, block kind, ``op`` and
``mask`` path the catalogue does not have (``gateway/kimi/drift.py``). The translator still ignores what
it does not know (doc 2.7.1); this only tells the operator that the upstream changed.
"""

from __future__ import annotations

from typing import Any

from gateway.kimi.drift import Drift, DriftKind

# Top-level keys of a data frame (doc 2.7); ``error`` only in the 0x02 frame.
FRAME_KEYS = frozenset({"op", "mask", "eventOffset", "chat", "message", "block", "heartbeat", "done", "notification"})
OPS = frozenset({"set", "append"})  # doc 2.7; a frame without `op` is a delta (C.8)
# Block kinds (doc 2.7.1; `multiStage` C.8) and the keys every block may carry besides its kind.
BLOCK_KINDS = frozenset({"text", "think", "stage", "multiStage", "tool", "search", "exception"})
BLOCK_COMMON = frozenset({"id", "parentId", "flags", "messageId"})
BLOCK_KEYS = BLOCK_KINDS | BLOCK_COMMON

# Field paths a `mask` may name (doc 2.7.1, C.8; comma-joined masks of doc 2.7 name several). Below a
# path of OPEN_PATHS anything is known: the catalogue gives those objects whole, not field by field.
MASK_PATHS = frozenset(
    {"chat", "chat.id", "chat.name", "chat.files", "chat.lastRequest", "chat.createTime", "chat.updateTime"}
    | {"message", "message.id", "message.parentId", "message.role", "message.status", "message.blocks"}
    | {"message.scenario", "message.createTime", "message.refs", "message.refs.searchChunks"}
    | {"message.refs.usedSearchChunks", "message.references"}
    | {"block", "block.id", "block.parentId", "block.flags", "block.text", "block.text.content", "block.text.flags"}
    | {"block.think", "block.think.content", "block.stage", "block.multiStage", "block.exception"}
    | {"block.tool", "block.tool.toolCallId", "block.tool.name", "block.tool.status", "block.tool.args"}
    | {"block.tool.contents", "block.tool.isError", "block.tool.errorCode"}
    | {"block.search", "block.search.keywords", "block.search.webPages"}
)
OPEN_PATHS = ("chat.lastRequest.", "message.blocks.", "block.stage.", "block.multiStage.", "block.exception.")

# Error reasons the mapping names (doc 2.13.1, 2.13.2, C.2); any other reason is decided by a guess.
KNOWN_REASONS = frozenset(
    {
        "REASON_INVALID_AUTH_TOKEN",
        "REASON_SERVER_OVERLOADED_FOR_FREE_USER",
        "REASON_COMPLETION_OVERLOADED",
        "REASON_TOKEN_LENGTH_TOO_LONG",
    }
)
# Connect's standard codes (doc 2.13.1, from the Connect protocol specification).
KNOWN_CODES = frozenset(
    {"canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists"}
    | {"permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range"}
    | {"unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"}
)


def note_frame(payload: dict[str, Any], drift: Drift) -> None:
    """Note what this data frame carries that the catalogue does not name. Runs on every frame: the
    common case (nothing unknown) is a few set operations."""
    if not payload.keys() <= FRAME_KEYS:
        for key in payload.keys() - FRAME_KEYS:
            drift.note("frame", key, payload)
    op = payload.get("op")
    if op is not None and op not in OPS:
        drift.note("field", f"op:{op}", payload)
    block = payload.get("block")
    noted: list[str] = []
    if isinstance(block, dict) and not block.keys() <= BLOCK_KEYS:
        noted = _note_block(block, payload, drift)
    mask = payload.get("mask")
    if isinstance(mask, str) and mask not in MASK_PATHS:
        for path in (p.strip() for p in mask.split(",")):
            # The mask of a block key noted just above says nothing more.
            if not known_path(path) and not any(path == n or path.startswith(n + ".") for n in noted):
                drift.note("field", path, payload)


def _note_block(block: dict[str, Any], payload: dict[str, Any], drift: Drift) -> list[str]:
    """Note the block's unknown keys; returns their paths (``block.<key>``)."""
    paths = [f"block.{key}" for key in block if key not in BLOCK_KEYS]
    # A block of no known kind is a new kind (agent scenarios add some, doc 2.7.1); beside a known kind
    # the key is a new field of it.
    kind: DriftKind = "field" if any(key in BLOCK_KINDS for key in block) else "frame"
    for path in paths:
        drift.note(kind, path, payload)
    return paths


def known_path(path: str) -> bool:
    return path in MASK_PATHS or path.startswith(OPEN_PATHS)


def note_error(error: dict[str, Any], *, code: str, reason: str, drift: Drift | None) -> None:
    """Note an error whose code or reason the mapping does not name (doc 2.13)."""
    if drift is None:
        return
    if code and code not in KNOWN_CODES:
        drift.note("error", f"code:{code}", error)
    if reason and reason not in KNOWN_REASONS:
        drift.note("error", reason, error)
