"""gateway/chat/reply.py: ``Reply`` opens one request's answer (reservation, failover before the first
content), fails over mid-answer on request (``reopen_after``), notes when the answer began, and starts
the final write exactly once (the first ending wins)."""

from __future__ import annotations

import asyncio

import pytest

from accounts.models import KimiAccount, Turn
from gateway import lifecycle
from gateway.chat.reply import Reply
from gateway.chat.settle import ending_client_closed, ending_success
from gateway.chat.sink import ReplyStats
from gateway.kimi.base import KimiError, ProtocolError, TextDelta
from gateway.models import Conversation, RequestLog
from gateway.openai.errors import GatewayError
from tests.integration.chat.helpers import make_job, orm


async def read_all(reply: Reply) -> tuple[str, KimiError | None]:
    text = []
    try:
        async for event in reply.events():
            if isinstance(event, TextDelta):
                text.append(event.text)
    except KimiError as exc:
        return "".join(text), exc
    return "".join(text), None


async def test_open_fails_over_before_the_first_content_and_the_failed_attempt_costs_nothing(pool):
    pool.fake.fault("overloaded", account="first")
    pool.fake.reply(text="from the second")
    reply = Reply(await make_job(pool))

    await reply.open()

    assert reply.attempt is not None and reply.attempt.account.pk == pool.second.pk
    assert reply.failover.attempts == 2 and reply.failover.exclude == {pool.first.pk}
    assert await read_all(reply) == ("from the second", None)
    await reply.finish(ending_success())
    turns = await orm(lambda: {t.account_id: (t.status, t.outcome) for t in Turn.objects.all()})
    assert turns == {pool.first.pk: ("refunded", "overloaded"), pool.second.pk: ("done", "ok")}


async def test_no_account_left_after_a_failed_attempt_reports_that_failure(pool):
    """Not "no account available" (429): the client learns what actually went wrong."""
    await orm(lambda: KimiAccount.objects.filter(pk=pool.second.pk).update(state="disabled"))
    pool.fake.fault("overloaded", account="first")
    reply = Reply(await make_job(pool))
    with pytest.raises(GatewayError) as caught:
        await reply.open()
    assert (caught.value.status, caught.value.code) == (503, "upstream_overloaded")
    assert reply.attempt is None and reply.failover.attempts == 1


async def test_no_account_at_all_is_a_429_before_any_attempt(pool):
    await orm(lambda: KimiAccount.objects.update(state="disabled"))
    reply = Reply(await make_job(pool))
    with pytest.raises(GatewayError) as caught:
        await reply.open()
    assert (caught.value.status, caught.value.code) == (429, "rate_limit_exceeded")
    assert reply.failover.attempts == 0 and not pool.fake.count("chat")


async def test_open_stops_at_the_attempt_limit(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 1
    pool.fake.fault("overloaded", account="first")
    reply = Reply(await make_job(pool))
    with pytest.raises(GatewayError):
        await reply.open()
    assert pool.fake.count("chat", account="second") == 0


async def test_reopen_after_a_mid_answer_failure_settles_it_and_opens_another_account(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 2
    pool.fake.reply(text="a long answer the first account cuts", chunk_size=4, account="first")
    pool.fake.fault("cut", after_events=6, account="first")
    pool.fake.reply(text="whole answer")
    reply = Reply(await make_job(pool))
    await reply.open()
    first_chat = reply.chat_id
    partial, error = await read_all(reply)
    assert partial and isinstance(error, ProtocolError) and reply.first_token_at is not None
    first_answer_began = reply.first_token_at

    await reply.reopen_after(error)

    assert reply.attempt is not None and reply.attempt.account.pk == pool.second.pk
    assert reply.chat_id != first_chat
    # The new answer starts afresh: its own first content (read while opening), no message id yet.
    assert reply.first_token_at is not None and reply.first_token_at > first_answer_began
    assert reply.parent_message_id == ""
    assert await read_all(reply) == ("whole answer", None)
    await reply.finish(ending_success())
    turns = await orm(lambda: {t.account_id: (t.status, t.outcome) for t in Turn.objects.all()})
    # The cut attempt had generated content: it counts (done), and its account cools down.
    assert turns == {pool.first.pk: ("done", "protocol_error"), pool.second.pk: ("done", "ok")}
    assert pool.fake.chats[first_chat].deleted


async def test_reopen_after_with_no_attempt_left_raises_and_still_settles_the_failed_one(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 1
    pool.fake.reply(text="a long answer the first account cuts", chunk_size=4)
    pool.fake.fault("cut", after_events=6)
    job = await make_job(pool)
    reply = Reply(job)
    await reply.open()
    _, error = await read_all(reply)
    assert error is not None

    with pytest.raises(GatewayError) as caught:
        await reply.reopen_after(error)

    assert caught.value.code == "upstream_protocol_error"
    assert reply.attempt is None
    assert not await orm(lambda: Turn.objects.filter(status="in_flight").exists())


async def test_events_note_when_the_answer_began_and_its_message_id(pool):
    pool.fake.reply(text="hello there")
    job = await make_job(pool)
    reply = Reply(job)
    await reply.open()
    assert await read_all(reply) == ("hello there", None)
    assert reply.first_token_at is not None and reply.first_token_at >= job.started
    assert reply.parent_message_id == pool.fake.chats[reply.chat_id].messages[-1].id


async def test_finish_starts_the_final_write_once_and_the_first_ending_wins(pool):
    pool.fake.reply(text="hello there")
    job = await make_job(pool)
    reply = Reply(job)
    await reply.open()
    await read_all(reply)

    first = reply.finish(ending_success(), ReplyStats(completion_chars=11, answer_preview="hello there"))
    second = reply.finish(ending_client_closed())
    assert second is first
    await first

    log = await orm(RequestLog.objects.get, pk=job.log_id)
    assert (log.outcome, log.status_code, log.completion_chars, log.attempts) == ("ok", 200, 11, 1)
    assert (log.account_id, log.upstream_chat_id) == (pool.first.pk, reply.chat_id)
    turn = await orm(Turn.objects.get, pk=reply.attempt.lease.turn_id)
    assert (turn.status, turn.outcome) == ("done", "ok")


async def test_a_request_cancelled_while_opening_gives_its_turn_back(pool):
    pool.fake.fault("silence", duration=5)
    reply = Reply(await make_job(pool))
    opening = asyncio.ensure_future(reply.open())
    while not pool.fake.count("chat"):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)

    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening

    # The abandoned attempt is settled by a tracked background task.
    assert await lifecycle.drain(5) == 0
    turn = await orm(Turn.objects.get)
    assert (turn.status, turn.outcome) == ("refunded", "client_closed")
    first = await orm(KimiAccount.objects.get, pk=pool.first.pk)
    assert first.state == "active"  # the client leaving says nothing about the account
    assert not await orm(lambda: Conversation.objects.filter(state="active").exists())
