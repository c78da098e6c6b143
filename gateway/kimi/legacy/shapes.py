"""What the legacy catalogue names (kimi-web-protocol.md 1.5, 1.10, 1.11); the rest is drift.

``note_event(kind, payload, drift)`` notes an SSE event whose ``event`` no handler knows (and that the
document does not list as one to ignore), an unknown key of a known event and an unknown
``search_plus`` ``msg.type`` (``gateway/kimi/drift.py``). The translator ignores them as before.
"""

from __future__ import annotations

from typing import Any

from gateway.kimi.drift import Drift

# The keys each event of doc 1.10 carries (the traces of 1.19 included: `resp` of a file upload).
EVENT_KEYS: dict[str, frozenset[str]] = {
    "req": frozenset({"id", "group_id", "content", "refs"}),
    "resp": frozenset({"id", "group_id", "status", "file_info"}),
    "debug": frozenset({"message"}),
    "search_plus": frozenset({"msg"}),
    "ref_docs": frozenset({"ref_cards"}),
    "cmpl": frozenset({"text"}),
    "k1": frozenset({"text", "summary", "search_results"}),
    "zone_set": frozenset({"zone_type"}),
    "length": frozenset(),
    "done": frozenset(),
    "all_done": frozenset(),
    "error": frozenset({"error", "error_type", "message", "detail"}),
    "ping": frozenset(),
}
SEARCH_TYPES = frozenset({"start", "start_res", "get_res", "done", "answer"})  # doc 1.11

# error_type values the mapping names (doc 1.5); any other is decided by status or a keyword guess.
KNOWN_ERROR_TYPES = frozenset(
    {
        "auth.token.invalid",
        "chat.user_stream_pushing",
        "chat.not_found",
        "chat.forbidden",
        "validation.error",
        "openai.completion.stream",
        "openai.completion.token_length_too_long",
    }
)


def note_event(kind: str, payload: dict[str, Any], drift: Drift) -> None:
    known = EVENT_KEYS.get(kind)
    if known is None:
        drift.note("frame", kind or "<none>", payload)
        return
    for key in payload:
        if key != "event" and key not in known:
            drift.note("field", f"{kind}.{key}", payload)
    msg = payload.get("msg")
    if kind == "search_plus" and isinstance(msg, dict) and msg.get("type") not in SEARCH_TYPES:
        drift.note("field", f"search_plus.msg.type={msg.get('type')}", payload)


def note_error(body: dict[str, Any], *, error_type: str, in_stream: bool, drift: Drift | None) -> None:
    """Note an error body whose ``error_type`` the mapping does not name (an HTTP error without a body
    says nothing about the protocol and is not noted)."""
    if drift is None or error_type in KNOWN_ERROR_TYPES:
        return
    if error_type or in_stream:
        drift.note("error", error_type or "<none>", body)
