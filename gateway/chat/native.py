"""Native multi-turn: a resent history continues the same upstream chat (opt-in per key or globally).

After a turn served in this mode the upstream chat is kept and its row (``Conversation``) holds the
fingerprint of what that chat now holds (gateway/chat/fingerprint.py: the messages the turn saw plus the
answer the client got) and the tool envelope nonce its instructions named. A later request of the same
caller, through the same door, whose history is exactly that plus new user or tool messages continues the
chat on the same account with only the new messages; anything else is flattened into a new chat as
before. The fingerprint decides, never a guess: the lookup is by the exact fingerprint of the history up
to its last assistant message, scoped to the caller's owners.

Two requests continuing one state at once: the claim is the same conditional update that guards an
explicit ``conversation_id`` continuation (kept -> active), so exactly one continues and the other is
flattened in a new chat. A turn whose answer held text after a tool call block (``trailing_after_tool``,
which the client never saw) leaves no state: Kimi's copy of the chat differs from the client's.

Hints the client sends (a session id header such as Claude Code's ``x-claude-code-session-id`` or
Codex's ``session_id`` / ``thread-id``, a Responses ``prompt_cache_key``, OpenAI's ``user``) narrow the
search: a chat kept under another session's hint is not continued, and among equal histories the one of
the same session is preferred. The hint never decides: the fingerprint does.

The log row's flags say which path served the request: ``native`` or ``flattened:<why>``.
"""

from __future__ import annotations

import dataclasses
import hashlib

from django.conf import settings
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest
from django.utils import timezone

from gateway.chat.fingerprint import chain, seed
from gateway.chat.turn import Job, Turn
from gateway.choices import ConversationState
from gateway.db.threads import db_call
from gateway.models import ApiKey, Conversation
from gateway.openai.messages import Message
from gateway.records.conversations import ContinuedConversation, conversation_release_unused

NEW_TURN_ROLES = ("user", "tool")
HINT_HEADERS = ("x-claude-code-session-id", "session_id", "session-id", "thread-id", "x-session-id")


@dataclasses.dataclass(frozen=True)
class NativeMatch:
    """The kept chat this request continues natively, and the nonce its tool instructions named."""

    conversation: ContinuedConversation
    nonce: str


def native_enabled(api_key: ApiKey | None) -> bool:
    """This caller's turns keep their chats for native continuation (``KIMIPROXY_NATIVE_MULTITURN`` for
    everyone, or the key's ``native_multiturn``)."""
    return bool(settings.KIMIPROXY_NATIVE_MULTITURN or (api_key is not None and api_key.native_multiturn))


def native_hint(request: HttpRequest, turn: Turn) -> str:
    """The client's session hint, hashed (the first session header, else the turn's own hint or user)."""
    raw = next((request.headers.get(name, "") for name in HINT_HEADERS if request.headers.get(name)), "")
    raw = raw or turn.session_hint or turn.user
    return hashlib.sha256(raw.encode()).hexdigest()[:32] if raw else ""


def _seed(turn: Turn, door: str) -> str:
    return seed(door=door, model=turn.model.served, tools=turn.tools, response_format=turn.response_format)


def history_split(messages: tuple[Message, ...]) -> int | None:
    """The index of the last assistant message when only new user / tool messages follow it (the shape
    a continuation has); None otherwise."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last is None:
        return None
    tail = messages[last + 1 :]
    if not tail or any(m.role not in NEW_TURN_ROLES for m in tail):
        return None
    return last


def native_claim(*, turn: Turn, door: str, owners: tuple[str, ...], hint: str = "") -> NativeMatch | str:
    """Claim the kept chat this history continues (sync; a worker thread), or say why there is none."""
    split = history_split(turn.messages)
    if split is None:
        return "new" if not any(m.role == "assistant" for m in turn.messages) else "no_new_turn"
    fingerprints = chain(_seed(turn, door), turn.messages)
    kept = Conversation.objects.filter(owner_hash__in=owners, kept=True)
    if hint:  # another session's chats are not candidates; this session's come first
        kept = kept.filter(native_hint__in=(hint, ""))
    same_session = Case(When(native_hint=hint, then=Value(0)), default=Value(1), output_field=IntegerField())
    row = kept.filter(native_fingerprint=fingerprints[split]).order_by(same_session, "-last_used_at").first()
    if row is None:
        known = kept.filter(native_fingerprint__in=fingerprints[:split]).exists()
        return "history_changed" if known else "no_state"
    claimed = Conversation.objects.filter(
        pk=row.pk, state=ConversationState.KEPT, native_fingerprint=fingerprints[split]
    ).update(state=ConversationState.ACTIVE, last_used_at=timezone.now())
    if claimed != 1:
        return "busy"
    continued = ContinuedConversation(row.pk, row.account_id, row.chat_id, row.parent_message_id)
    return NativeMatch(conversation=continued, nonce=row.native_nonce)


def state_fingerprint(*, turn: Turn, door: str, answer: Message) -> str:
    """What the chat holds after this turn: the history it was sent plus the answer the client got."""
    return chain(_seed(turn, door), (*turn.messages, answer))[-1]


def native_state_store(*, conversation_id: int, fingerprint: str, nonce: str, hint: str = "") -> None:
    """Record (or, with an empty fingerprint, drop) the state a kept chat can be continued from."""
    Conversation.objects.filter(pk=conversation_id).update(
        native_fingerprint=fingerprint, native_nonce=nonce, native_hint=hint
    )


async def native_fallback(job: Job, reason: str) -> Job:
    """The job served flattened in a new chat after all, its claim on the kept chat given back."""
    assert job.native is not None
    await db_call(conversation_release_unused, conversation_id=job.native.conversation.conversation_id)
    return dataclasses.replace(job, continued=None, native=None, native_flag=f"flattened:{reason}")
