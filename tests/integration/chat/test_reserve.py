"""gateway/chat/reserve.py: a lease for one request (waiting while accounts are only busy), why none can
be had (reason and retry time, as the client sees them), and ``Failover``: what one failed attempt
costs its account and whether another may be tried."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import KimiAccount, Turn
from accounts.pool import NoAccountAvailable
from gateway.chat import reserve
from gateway.chat.attempt import Attempt
from gateway.chat.finish import Final, finish_spawn
from gateway.chat.reserve import Failover, no_account_error, reserve_waiting
from gateway.chat.settle import ending_success
from gateway.chat.waiting import slot_waiters
from gateway.kimi.base import BadRequest, Overloaded, RateLimited
from gateway.models import Conversation
from gateway.openai.errors import ConversationUnavailable, RateLimitExceeded
from gateway.records.conversations import ContinuedConversation
from tests.integration.chat.helpers import continued_conversation, make_job, orm


async def test_it_reserves_the_preferred_account_and_skips_the_excluded_ones(pool):
    job = await make_job(pool)
    lease, account = await reserve_waiting(job, set())
    assert (lease.account_id, account.pk) == (pool.first.pk, pool.first.pk)
    turn = await orm(Turn.objects.get, pk=lease.turn_id)
    assert (turn.status, turn.request_id) == ("in_flight", job.request_id)

    lease, account = await reserve_waiting(job, {pool.first.pk})
    assert account.pk == pool.second.pk


async def test_a_continued_conversation_is_served_only_by_the_account_that_holds_it(pool):
    continued = ContinuedConversation(conversation_id=1, account_id=pool.second.pk, chat_id="c", parent_message_id="")
    job = await make_job(pool, continued=continued)
    _, account = await reserve_waiting(job, set())
    assert account.pk == pool.second.pk  # although "first" is the pool's preference
    with pytest.raises(NoAccountAvailable):
        await reserve_waiting(job, {pool.second.pk})


class TestWaiting:
    @pytest.fixture
    def pool_limits(self):
        return {"max_concurrent": 1}

    async def _fill(self, pool):
        """Both accounts at their concurrency cap: (job, lease, account) of each."""
        held = []
        for _ in range(2):
            job = await make_job(pool)
            held.append((job, *await reserve_waiting(job, set())))
        return held

    async def test_it_waits_for_a_busy_account_and_is_served_when_a_lease_is_released(
        self, pool, settings, monkeypatch
    ):
        settings.KIMIPROXY_QUEUE_TIMEOUT = 20
        # Only this process's release can wake the waiter in time: the cross-process poll is slower.
        monkeypatch.setattr(reserve, "CROSS_PROCESS_POLL_SECONDS", 30)
        (job1, lease1, account1), _ = await self._fill(pool)
        waiting = asyncio.ensure_future(reserve_waiting(await make_job(pool), set()))
        while not len(slot_waiters()):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert not waiting.done()  # busy accounts: the request waits instead of failing

        await finish_spawn(job1, Final(ending=ending_success(), attempt=Attempt(job1, lease1, account1), attempts=1))

        lease, account = await asyncio.wait_for(waiting, 5)
        assert account.pk == account1.pk and lease.turn_id != lease1.turn_id

    async def test_it_gives_up_as_busy_when_the_queue_wait_runs_out(self, pool, settings):
        settings.KIMIPROXY_QUEUE_TIMEOUT = 0.2
        await self._fill(pool)
        with pytest.raises(NoAccountAvailable) as caught:
            await reserve_waiting(await make_job(pool), set())
        assert (caught.value.reason, caught.value.retry_at) == ("busy", None)
        error = no_account_error(caught.value, continued=False)
        assert (error.status, error.code, error.retry_after) == (429, "rate_limit_exceeded", 60.0)


@pytest.mark.parametrize("state", ["disabled", "invalid"])
async def test_it_does_not_wait_when_no_account_could_serve(pool, settings, state):
    settings.KIMIPROXY_QUEUE_TIMEOUT = 30
    await orm(lambda: KimiAccount.objects.update(state=state))
    with pytest.raises(NoAccountAvailable) as caught:
        await asyncio.wait_for(reserve_waiting(await make_job(pool), set()), 5)  # not the 30 s queue wait
    assert (caught.value.reason, caught.value.retry_at) == (state, None)
    assert len(slot_waiters()) == 0


async def test_a_cooling_pool_says_when_the_first_account_frees_up(pool):
    now = timezone.now()
    await orm(
        lambda: KimiAccount.objects.filter(pk=pool.first.pk).update(
            state="cooling", cooldown_until=now + timedelta(seconds=300)
        )
    )
    await orm(
        lambda: KimiAccount.objects.filter(pk=pool.second.pk).update(
            state="exhausted", cooldown_until=now + timedelta(seconds=120)
        )
    )
    with pytest.raises(NoAccountAvailable) as caught:
        await reserve_waiting(await make_job(pool), set())
    assert caught.value.reason == "exhausted"
    assert caught.value.retry_at == now + timedelta(seconds=120)
    error = no_account_error(caught.value, continued=False)
    assert isinstance(error, RateLimitExceeded) and 100 < error.retry_after <= 120
    assert "exhausted" in error.message


def test_a_retry_time_already_past_is_still_at_least_one_second():
    error = no_account_error(
        NoAccountAvailable(reason="cooling", retry_at=timezone.now() - timedelta(seconds=5)), continued=False
    )
    assert error.retry_after == 1.0


@pytest.mark.parametrize(
    ("reason", "unavailable"), [("invalid", True), ("disabled", True), ("exhausted", False), ("busy", False)]
)
def test_a_continuation_whose_account_is_gone_is_told_to_start_again(reason, unavailable):
    error = no_account_error(NoAccountAvailable(reason=reason, retry_at=None), continued=True)
    assert isinstance(error, ConversationUnavailable if unavailable else RateLimitExceeded)
    assert error.status == (409 if unavailable else 429)


class TestFailover:
    async def _attempt(self, job, failover, exclude=()):
        lease, account = await reserve_waiting(job, set(exclude))
        failover.attempts += 1
        return Attempt(job, lease, account)

    async def test_a_retryable_failure_settles_the_attempt_and_allows_another_account(self, pool, settings):
        settings.KIMIPROXY_MAX_ATTEMPTS = 2
        job = await make_job(pool)
        failover = Failover(job)
        attempt = await self._attempt(job, failover)

        assert await failover.may_retry_after(attempt, Overloaded("too busy")) is True

        assert failover.exclude == {pool.first.pk} and isinstance(failover.last_error, Overloaded)
        turn = await orm(Turn.objects.get, pk=attempt.lease.turn_id)
        assert (turn.status, turn.outcome) == ("refunded", "overloaded")  # no work done: not counted
        first = await orm(KimiAccount.objects.get, pk=pool.first.pk)
        assert (first.state, first.last_error_code) == ("cooling", "overloaded")

        second = await self._attempt(job, failover, failover.exclude)
        assert second.account.pk == pool.second.pk
        assert await failover.may_retry_after(second, RateLimited("quota", retry_after=600)) is False  # the last one
        error = failover.final_error()
        assert (error.status, error.code) == (429, "upstream_rate_limited")
        second_row = await orm(KimiAccount.objects.get, pk=pool.second.pk)
        assert second_row.state == "exhausted"
        assert 590 < (second_row.cooldown_until - timezone.now()).total_seconds() <= 600

    async def test_a_failure_another_account_would_repeat_stops_at_once(self, pool, settings):
        settings.KIMIPROXY_MAX_ATTEMPTS = 3
        job = await make_job(pool)
        failover = Failover(job)
        attempt = await self._attempt(job, failover)
        assert await failover.may_retry_after(attempt, BadRequest("no such file")) is False
        turn = await orm(Turn.objects.get, pk=attempt.lease.turn_id)
        assert (turn.status, turn.outcome) == ("done", "bad_request")
        first = await orm(KimiAccount.objects.get, pk=pool.first.pk)
        assert first.state == "active"  # our request was bad, not the account
        assert failover.final_error().code == "upstream_bad_request"

    async def test_a_continuation_gets_one_attempt_and_keeps_its_conversation(self, pool, settings):
        settings.KIMIPROXY_MAX_ATTEMPTS = 3
        continued = await continued_conversation(pool, pool.first, "kept-chat")
        job = await make_job(pool, continued=continued)
        failover = Failover(job)
        assert failover.max_attempts == 1
        attempt = await self._attempt(job, failover)

        assert await failover.may_retry_after(attempt, Overloaded()) is False

        row = await orm(Conversation.objects.get, pk=continued.conversation_id)
        assert (row.state, row.kept) == ("kept", True)  # given back for a later try, never deleted
        assert not [c for c in pool.fake.calls if c.kind == "delete"]
