"""Helpers for the stage tests: the pool they run on, jobs as accept hands them over, a recording sink."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from accounts.models import KimiAccount
from gateway.chat.prompt import prompt_text
from gateway.chat.sink import ReplyStats
from gateway.chat.turn import Job, Turn
from gateway.db.threads import db_call
from gateway.kimi.base import Done, KimiEvent, TextDelta
from gateway.kimi.fake import FakeKimi
from gateway.models import ApiKey
from gateway.openai.errors import GatewayError
from gateway.openai.messages import Message
from gateway.openai.model_names import parse_model
from gateway.records.callers import caller_for_key
from gateway.records.conversations import (
    ContinuedConversation,
    conversation_for_continue,
    conversation_record,
    conversation_settle,
)
from gateway.records.logs import LogStart, request_log_accept
from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account


@dataclasses.dataclass
class Pool:
    fake: FakeKimi
    first: KimiAccount  # reserved first (least recently used)
    second: KimiAccount
    key: ApiKey


def make_pool(fake: FakeKimi, limits: dict[str, Any]) -> Pool:
    first = pool_account(fake, "first", **limits)
    second = pool_account(fake, "second", **limits)
    KimiAccount.objects.filter(pk=second.pk).update(last_used_at="2030-01-01T00:00:00Z")
    key, _ = make_api_key()
    return Pool(fake=fake, first=first, second=second, key=key)


def turn_of(text: str = "hi", *, model: str = "kimi", **fields: Any) -> Turn:
    return Turn(model=parse_model(model), messages=(Message(role="user", text=text),), **fields)


def _accepted(pool: Pool, turn: Turn, continued: ContinuedConversation | None) -> Job:
    caller, key = caller_for_key(pool.key)
    request_id = f"test-{time.monotonic_ns()}"
    prompt = prompt_text(turn)
    flags = tuple(turn.model.flags)
    start = LogStart(request_id=request_id, path="/test", model=turn.model.requested, flags=flags, stream=turn.stream)
    log_id = request_log_accept(caller=caller, start=dataclasses.replace(start, prompt_chars=len(prompt)))
    return Job(
        request_id=request_id,
        log_id=log_id,
        caller=caller,
        api_key=key,
        turn=turn,
        prompt_text=prompt,
        started=time.monotonic(),
        continued=continued,
        flags=flags,
    )


async def make_job(pool: Pool, turn: Turn | None = None, *, continued: ContinuedConversation | None = None) -> Job:
    """A job as accept hands it over: its pending log row written, no files."""
    return await db_call(_accepted, pool, turn or turn_of(), continued)


async def orm(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a (sync) ORM read from the async test."""
    return await db_call(fn, *args, **kwargs)


class RecordingSink:
    """A sink (gateway/chat/sink.py) that records what the pipeline asked of it, in order.

    ``finish_after``: report the answer complete after that many text deltas (as a stop sequence or a
    length cut would). ``broken_at``: raise a bug of ours on that text delta.
    """

    def __init__(self, *, streams: bool, finish_after: int | None = None, broken_at: int | None = None) -> None:
        self.streams = streams
        self.finish_after, self.broken_at = finish_after, broken_at
        self.calls: list[tuple[str, object]] = []
        self.texts: list[str] = []
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done or (self.finish_after is not None and len(self.texts) >= self.finish_after)

    def start(self, *, chat_id: str) -> None:
        self.calls.append(("start", chat_id))
        self.texts, self.done = [], False

    def feed(self, event: KimiEvent) -> Sequence[bytes]:
        self.calls.append(("feed", event))
        if isinstance(event, TextDelta):
            if self.broken_at is not None and len(self.texts) + 1 == self.broken_at:
                raise RuntimeError("simulated bug in a sink")
            self.texts.append(event.text)
            return [f"text:{event.text}".encode()] if self.streams else ()
        if isinstance(event, Done):
            self.done = True
        return ()

    def keepalive(self) -> bytes:
        self.calls.append(("keepalive", None))
        return b"keepalive"

    def close(self) -> Sequence[bytes]:
        self.calls.append(("close", None))
        return [b"end"] if self.streams else ()

    def fail(self, error: GatewayError) -> Sequence[bytes]:
        self.calls.append(("fail", error))
        return [f"fail:{error.code}".encode()]

    def stats(self) -> ReplyStats:
        text = "".join(self.texts)
        return ReplyStats(completion_chars=len(text), answer_preview=text[:200])

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    @property
    def text(self) -> str:
        return "".join(self.texts)


def _kept(pool: Pool, account: KimiAccount, chat_id: str, parent_message_id: str) -> int:
    owner = f"key:{pool.key.pk}"
    row_id = conversation_record(
        account_id=account.pk, chat_id=chat_id, api_key_id=pool.key.pk, owner_hash=owner, request_id="earlier"
    )
    conversation_settle(conversation_id=row_id, keep=True, parent_message_id=parent_message_id)
    return row_id


async def kept_conversation(pool: Pool, account: KimiAccount, chat_id: str, parent_message_id: str = "") -> int:
    """The row id of a conversation an earlier request of ``pool.key`` kept on ``account``."""
    return await db_call(_kept, pool, account, chat_id, parent_message_id)


async def continued_conversation(
    pool: Pool, account: KimiAccount, chat_id: str, parent_message_id: str = ""
) -> ContinuedConversation:
    """A kept conversation, claimed for continuing as accept does (its row now ``active``)."""
    await kept_conversation(pool, account, chat_id, parent_message_id)
    owners = (f"key:{pool.key.pk}",)
    return await db_call(conversation_for_continue, chat_id=chat_id, owners=owners)
