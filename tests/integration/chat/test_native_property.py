"""Native multi-turn can never mix two conversations (gateway/chat/native.py), as a property.

Two callers grow random conversation trees — new turns, branches from an earlier point, edited
messages, regenerated answers, removed turns — with texts from a tiny alphabet so that the same history
and the same answer often occur in both callers' trees. Each request is served the way the pipeline does
it: ``native_claim`` at accept, the upstream chat appended to, the state stored by the final write
(``native_state_store`` after ``conversation_settle``). A simulated upstream records what each chat holds;
whenever a request continues a chat, that chat must hold exactly the request's history up to its last
answer, and belong to the same caller.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.chat.native import NativeMatch, native_claim, native_state_store, state_fingerprint
from gateway.chat.turn import Turn
from gateway.models import Conversation
from gateway.openai.messages import Message
from gateway.openai.model_names import parse_model
from gateway.records.conversations import conversation_settle
from tests.factories import make_account

DOOR = "chat_completions"
OWNERS = ("key:1", "key:2")
TEXTS = st.sampled_from(["a", "b"])


@dataclasses.dataclass
class Upstream:
    """What each simulated Kimi chat holds, and whose it is."""

    holds: dict[str, list[Message]] = dataclasses.field(default_factory=dict)
    owner: dict[str, str] = dataclasses.field(default_factory=dict)


def _serve(upstream: Upstream, account_id: int, owner: str, history: list[Message], answer_text: str) -> list[Message]:
    """One request through the native stages; returns the history the client now has (with the answer)."""
    turn = Turn(model=parse_model("kimi"), messages=tuple(history))
    match = native_claim(turn=turn, door=DOOR, owners=(owner,))
    answer = Message(role="assistant", text=answer_text)
    if isinstance(match, NativeMatch):
        chat_id = match.conversation.chat_id
        last = max(i for i, m in enumerate(history) if m.role == "assistant")
        assert upstream.owner[chat_id] == owner, "a chat of another caller was continued"
        assert upstream.holds[chat_id] == history[: last + 1], "a chat holding another history was continued"
        upstream.holds[chat_id] += [*history[last + 1 :], answer]
        conversation_id = match.conversation.conversation_id
        event("native")
    else:
        chat_id = f"chat-{len(upstream.holds)}"
        upstream.holds[chat_id], upstream.owner[chat_id] = [*history, answer], owner
        now = timezone.now()
        conversation_id = Conversation.objects.create(
            account_id=account_id, chat_id=chat_id, owner_hash=owner, created_at=now, last_used_at=now
        ).pk
        event(f"flattened:{match}")
    conversation_settle(conversation_id=conversation_id, keep=True)
    native_state_store(
        conversation_id=conversation_id, fingerprint=state_fingerprint(turn=turn, door=DOOR, answer=answer), nonce=""
    )
    return [*history, answer]


@st.composite
def next_request(draw: st.DrawFn, known: list[list[Message]]) -> list[Message]:
    """A history to send: a new conversation, or one the caller has seen, changed in one of several ways."""
    if not known or draw(st.integers(0, 4)) == 0:
        system = [Message(role="system", text=draw(TEXTS))] if draw(st.booleans()) else []
        return [*system, Message(role="user", text=draw(TEXTS))]
    base = list(draw(st.sampled_from(known)))
    action = draw(st.sampled_from(["continue", "continue", "branch", "edit", "regenerate", "remove"]))
    if action == "branch":  # go on from an earlier answer
        answers = [i for i, m in enumerate(base) if m.role == "assistant"]
        base = base[: draw(st.sampled_from(answers)) + 1]
    elif action == "edit":
        i = draw(st.integers(0, len(base) - 1))
        base[i] = dataclasses.replace(base[i], text=base[i].text + draw(TEXTS))
    elif action == "regenerate":  # ask the same question again: drop the last answer
        return base[:-1]
    elif action == "remove" and len(base) > 2:
        del base[draw(st.integers(0, len(base) - 2))]
    return [*base, Message(role="user", text=draw(TEXTS))]


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_chat_ever_receives_a_turn_of_another_history(data) -> None:
    Conversation.objects.all().delete()  # the database is not rolled back between examples
    account = make_account()
    upstream = Upstream()
    known: dict[str, list[list[Message]]] = {owner: [] for owner in OWNERS}
    for _ in range(data.draw(st.integers(2, 14), label="requests")):
        owner = data.draw(st.sampled_from(OWNERS), label="caller")
        history = data.draw(next_request(known[owner]), label="history")
        if not any(m.role == "user" for m in history):
            continue
        known[owner].append(_serve(upstream, account.pk, owner, history, data.draw(TEXTS, label="answer")))
