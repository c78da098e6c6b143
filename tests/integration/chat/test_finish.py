"""gateway/chat/finish.py: the final write of an accepted request, once, from a tracked task — the log
row, the lease released, the upstream chat deleted (unless kept), a kept conversation given back when
no account served its continuation, and a waiting request woken."""

from __future__ import annotations

import asyncio

import pytest

from accounts.models import Turn
from gateway import lifecycle
from gateway.chat.attempt import Attempt
from gateway.chat.finish import Final, finish_spawn
from gateway.chat.reserve import reserve_waiting
from gateway.chat.settle import ending_for_error, ending_success
from gateway.chat.sink import ReplyStats
from gateway.chat.turn import Job
from gateway.chat.waiting import slot_waiters
from gateway.kimi.base import Overloaded
from gateway.models import Conversation, RequestLog
from gateway.openai.errors import InvalidRequest, RateLimitExceeded, gateway_error_from_kimi
from tests.integration.chat.helpers import continued_conversation, make_job, orm, turn_of


async def answered(job: Job) -> Attempt:
    """An attempt that read a whole answer (its chat recorded, its lease still held)."""
    lease, account = await reserve_waiting(job, set())
    attempt = Attempt(job, lease, account)
    async for _ in attempt.events(await attempt.open()):
        pass
    return attempt


async def log_of(job: Job) -> RequestLog:
    return await orm(RequestLog.objects.get, pk=job.log_id)


async def test_it_writes_the_log_row_releases_the_lease_and_deletes_the_chat(pool, settings):
    settings.KIMIPROXY_LOG_PREVIEWS = True
    pool.fake.reply(text="hello")
    job = await make_job(pool)
    attempt = await answered(job)
    stats = ReplyStats(completion_chars=5, prompt_tokens=2, completion_tokens=3, answer_preview="hello")

    await finish_spawn(
        job, Final(ending=ending_success(), attempt=attempt, attempts=1, stats=stats, first_token_at=job.started + 0.25)
    )

    log = await log_of(job)
    assert (log.status_code, log.outcome, log.error_code, log.attempts) == (200, "ok", "", 1)
    assert (log.account_id, log.upstream_chat_id) == (pool.first.pk, attempt.chat_id)
    assert (log.completion_chars, log.prompt_tokens, log.completion_tokens, log.answer_preview) == (5, 2, 3, "hello")
    assert log.ttft_ms == 250 and log.latency_ms >= 0 and log.finished_at is not None
    turn = await orm(Turn.objects.get, pk=attempt.lease.turn_id)
    assert (turn.status, turn.outcome) == ("done", "ok")
    assert pool.fake.chats[attempt.chat_id].deleted
    assert not await orm(Conversation.objects.exists)
    assert attempt.closed


async def test_a_kept_chat_stays_with_its_last_message_id(pool):
    pool.fake.reply(text="remember this")
    job = await make_job(pool, turn_of(keep=True))
    attempt = await answered(job)

    await finish_spawn(job, Final(ending=ending_success(), attempt=attempt, attempts=1, parent_message_id="msg-7"))

    row = await orm(Conversation.objects.get, chat_id=attempt.chat_id)
    assert (row.state, row.kept, row.parent_message_id) == ("kept", True, "msg-7")
    assert not pool.fake.chats[attempt.chat_id].deleted
    assert not pool.fake.count("delete")


async def test_a_chat_to_keep_whose_answer_failed_is_deleted(pool):
    pool.fake.reply(text="half")
    job = await make_job(pool, turn_of(keep=True))
    attempt = await answered(job)
    cause = Overloaded()

    await finish_spawn(
        job, Final(ending=ending_for_error(gateway_error_from_kimi(cause), cause=cause), attempt=attempt, attempts=1)
    )

    assert pool.fake.chats[attempt.chat_id].deleted
    assert not await orm(Conversation.objects.exists)
    turn = await orm(Turn.objects.get, pk=attempt.lease.turn_id)
    assert (turn.status, turn.outcome) == ("done", "overloaded")  # content arrived: not refunded


async def test_a_continued_chat_stays_kept_even_when_its_answer_failed(pool):
    pool.fake.reply(text="first answer")
    first_job = await make_job(pool, turn_of(keep=True))
    first = await answered(first_job)
    await finish_spawn(first_job, Final(ending=ending_success(), attempt=first, attempts=1))
    continued = await continued_conversation(pool, pool.first, first.chat_id)
    job = await make_job(pool, turn_of("and then?", continue_chat=first.chat_id), continued=continued)
    attempt = await answered(job)
    cause = Overloaded()

    await finish_spawn(
        job, Final(ending=ending_for_error(gateway_error_from_kimi(cause), cause=cause), attempt=attempt, attempts=1)
    )

    row = await orm(Conversation.objects.get, pk=continued.conversation_id)
    assert (row.state, row.kept) == ("kept", True)
    assert not pool.fake.chats[first.chat_id].deleted


async def test_a_continuation_no_account_served_gives_its_conversation_back(pool):
    continued = await continued_conversation(pool, pool.first, "chat-kept-earlier", "msg-3")
    job = await make_job(pool, turn_of(continue_chat="chat-kept-earlier"), continued=continued)
    assert (await orm(Conversation.objects.get, pk=continued.conversation_id)).state == "active"

    await finish_spawn(job, Final(ending=ending_for_error(RateLimitExceeded("no account", retry_after=30))))

    row = await orm(Conversation.objects.get, pk=continued.conversation_id)
    assert (row.state, row.kept, row.parent_message_id) == ("kept", True, "msg-3")
    log = await log_of(job)
    assert (log.status_code, log.outcome, log.attempts, log.account_id) == (429, "rate_limited", 0, None)
    assert not pool.fake.count("delete")


async def test_a_request_refused_before_any_attempt_gets_only_its_log_row(pool):
    job = await make_job(pool)

    await finish_spawn(job, Final(ending=ending_for_error(InvalidRequest("bad file", code="file_url_refused"))))

    log = await log_of(job)
    assert (log.status_code, log.outcome, log.error_code, log.error_message) == (
        400,
        "client_error",
        "file_url_refused",
        "bad file",
    )
    assert not await orm(Turn.objects.exists)


async def test_a_chat_whose_delete_fails_is_left_for_cleanup(pool):
    pool.fake.reply(text="hello")
    pool.fake.fault("http_5xx", on=["delete"], times=None)
    job = await make_job(pool)
    attempt = await answered(job)

    await finish_spawn(job, Final(ending=ending_success(), attempt=attempt, attempts=1))

    row = await orm(Conversation.objects.get, chat_id=attempt.chat_id)
    assert row.state == "delete_failed" and row.last_error and row.delete_attempts == 1
    assert (await log_of(job)).outcome == "ok"


async def test_flags_the_account_ignored_are_logged_beside_the_requested_ones(pool):
    pool.fake.reply(text="x")
    job = await make_job(pool, turn_of(model="kimi-math"))  # Connect has no math mode
    attempt = await answered(job)

    await finish_spawn(job, Final(ending=ending_success(), attempt=attempt, attempts=1))

    assert (await log_of(job)).flags == ["math", "ignored:math"]


async def test_releasing_the_lease_wakes_a_waiting_request(pool):
    pool.fake.reply(text="x")
    job = await make_job(pool)
    attempt = await answered(job)
    waiter = asyncio.ensure_future(slot_waiters().wait(30))
    await asyncio.sleep(0.01)

    await finish_spawn(job, Final(ending=ending_success(), attempt=attempt, attempts=1))

    await asyncio.wait_for(waiter, 1)


async def test_the_final_write_outlives_the_request_that_started_it(pool):
    pool.fake.reply(text="x")
    job = await make_job(pool)
    attempt = await answered(job)

    async def request() -> None:
        finish_spawn(job, Final(ending=ending_success(), attempt=attempt, attempts=1))
        await asyncio.sleep(30)

    handling = asyncio.ensure_future(request())
    await asyncio.sleep(0)
    handling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handling

    assert await lifecycle.drain(5) == 0
    assert (await log_of(job)).outcome == "ok"
