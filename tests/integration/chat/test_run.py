"""gateway/chat/run.py: the one loop over upstream events for every sink — when it stops, what a
silence sends, failover (collected) versus a failed stream (streaming), and the final write on every
exit, the client going away included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from accounts.models import Turn
from gateway import lifecycle
from gateway.chat.reply import Reply
from gateway.chat.run import StreamBody, run, with_keepalive
from gateway.kimi.base import Done, Heartbeat, KimiEvent, ProtocolError, TextDelta
from gateway.models import Conversation, RequestLog
from gateway.openai.errors import GatewayError
from tests.integration.chat.helpers import RecordingSink, make_job, orm, turn_of


async def opened(pool, turn=None) -> Reply:
    reply = Reply(await make_job(pool, turn))
    await reply.open()
    return reply


async def final_log(reply: Reply) -> RequestLog:
    """The request's log row once the final write the run started has landed."""
    assert await lifecycle.drain(5) == 0
    log = await orm(RequestLog.objects.get, pk=reply.job.log_id)
    assert log.outcome != "pending", "the run did not start the final write"
    return log


async def test_done_ends_the_loop_and_the_request_succeeds(pool):
    pool.fake.reply(text="hello world", chunk_size=3)
    reply = await opened(pool)
    sink = RecordingSink(streams=False)

    assert [data async for data in run(reply, sink)] == []

    assert sink.names()[0] == "start" and sink.calls[0][1] == reply.chat_id
    assert sink.names()[-2:] == ["feed", "close"] and isinstance(sink.calls[-2][1], Done)
    assert sink.text == "hello world"
    log = await final_log(reply)
    assert (log.outcome, log.status_code, log.completion_chars, log.answer_preview) == ("ok", 200, 11, "")


async def test_a_complete_answer_stops_the_reading(pool):
    pool.fake.reply(text="abcdefghij", chunk_size=2)
    reply = await opened(pool)
    sink = RecordingSink(streams=True, finish_after=1)

    sent = [data async for data in run(reply, sink)]

    assert sent == [b"text:ab", b"end"]
    assert not any(isinstance(event, Done) for _, event in sink.calls)
    assert (await final_log(reply)).outcome == "ok"


async def test_a_kept_chat_is_read_to_its_done_for_the_next_turns_parent(pool):
    pool.fake.reply(text="abcdefghij", chunk_size=2)
    reply = await opened(pool, turn_of(keep=True))
    sink = RecordingSink(streams=True, finish_after=1)

    sent = [data async for data in run(reply, sink)]

    assert sent[-1] == b"end" and isinstance(sink.calls[-2][1], Done)
    await final_log(reply)
    row = await orm(Conversation.objects.get, chat_id=reply.chat_id)
    assert (row.state, row.parent_message_id) == ("kept", pool.fake.chats[reply.chat_id].messages[-1].id)


@pytest.mark.parametrize("streams", [True, False])
async def test_silences_send_keepalives_only_on_a_streaming_sink(pool, settings, streams):
    settings.KIMIPROXY_KEEPALIVE_SECONDS = 0.05
    pool.fake.fault("stall", interval=0.05, duration=0.4)  # upstream heartbeats, then the answer
    pool.fake.reply(text="after a while")
    reply = await opened(pool)
    sink = RecordingSink(streams=streams)

    sent = [data async for data in run(reply, sink)]

    assert sink.text == "after a while"
    assert not any(isinstance(event, Heartbeat) for _, event in sink.calls)  # never fed to a sink
    if streams:
        assert sent.count(b"keepalive") >= 2 and sent.index(b"keepalive") < sent.index(b"text:after a ")
    else:
        assert "keepalive" not in sink.names() and sent == []


async def test_a_collected_sink_fails_over_mid_answer_and_starts_again(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 2
    pool.fake.reply(text="a long answer the first account cuts", chunk_size=4, account="first")
    pool.fake.fault("cut", after_events=6, account="first")
    pool.fake.reply(text="whole answer")
    reply = await opened(pool)
    first_chat = reply.chat_id
    sink = RecordingSink(streams=False)

    async for _ in run(reply, sink):
        pass

    starts = [chat_id for name, chat_id in sink.calls if name == "start"]
    assert starts == [first_chat, reply.chat_id] and first_chat != reply.chat_id
    assert sink.text == "whole answer" and "fail" not in sink.names()
    log = await final_log(reply)
    assert (log.outcome, log.attempts, log.account_id) == ("ok", 2, pool.second.pk)


async def test_a_streaming_sink_is_failed_after_the_first_byte_and_never_fails_over(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 3
    pool.fake.reply(text="partial answer that will be cut", chunk_size=4)
    pool.fake.fault("cut", after_events=8)
    reply = await opened(pool)
    sink = RecordingSink(streams=True)

    sent = [data async for data in run(reply, sink)]

    assert sent[0].startswith(b"text:") and sent[-1] == b"fail:upstream_protocol_error"
    assert "close" not in sink.names() and pool.fake.count("chat") == 1
    log = await final_log(reply)
    assert (log.outcome, log.status_code, log.error_code) == ("upstream_error", 502, "upstream_protocol_error")
    turn = await orm(Turn.objects.get)
    assert (turn.status, turn.outcome) == ("done", "protocol_error")


async def test_a_collected_sink_with_no_attempt_left_raises_for_its_door(pool, settings):
    settings.KIMIPROXY_MAX_ATTEMPTS = 1
    pool.fake.reply(text="partial answer that will be cut", chunk_size=4)
    pool.fake.fault("cut", after_events=8)
    reply = await opened(pool)

    with pytest.raises(GatewayError) as caught:
        async for _ in run(reply, RecordingSink(streams=False)):
            pass

    assert caught.value.code == "upstream_protocol_error"
    log = await final_log(reply)
    assert (log.outcome, log.error_code) == ("upstream_error", "upstream_protocol_error")


async def test_a_bug_in_a_streaming_sink_still_ends_the_stream_and_the_request(pool):
    pool.fake.reply(text="abcdefghij", chunk_size=2)
    reply = await opened(pool)
    sink = RecordingSink(streams=True, broken_at=2)

    sent = [data async for data in run(reply, sink)]

    assert sent == [b"text:ab", b"fail:internal_error"]
    log = await final_log(reply)
    assert (log.status_code, log.error_code) == (500, "internal_error")


async def test_a_bug_in_a_collected_sink_is_raised_after_its_ending_is_recorded(pool):
    pool.fake.reply(text="abcdefghij", chunk_size=2)
    reply = await opened(pool)

    with pytest.raises(RuntimeError, match="simulated bug"):
        async for _ in run(reply, RecordingSink(streams=False, broken_at=2)):
            pass

    log = await final_log(reply)
    assert (log.status_code, log.error_code) == (500, "internal_error")


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_the_client_going_away_mid_stream_still_finishes_the_request(pool, how):
    pool.fake.reply(text="x" * 200, chunk_size=4, delay=0.2)
    reply = await opened(pool)
    body = run(reply, RecordingSink(streams=True))
    assert (await anext(body)).startswith(b"text:")
    if how == "aclose":  # what Django's handler does with the body of a response it stops
        await body.aclose()
    else:
        reading = asyncio.ensure_future(anext(body))
        await asyncio.sleep(0)  # the read has begun: it waits for the next upstream frame
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading

    log = await final_log(reply)
    assert (log.outcome, log.status_code) == ("client_closed", 499)
    turn = await orm(Turn.objects.get)
    assert (turn.status, turn.outcome) == ("done", "client_closed")
    assert pool.fake.chats[reply.chat_id].deleted


async def test_a_streaming_body_never_iterated_is_finished_by_its_close(pool):
    pool.fake.reply(text="never read")
    reply = await opened(pool)

    StreamBody(reply, RecordingSink(streams=True)).close()

    log = await final_log(reply)
    assert log.outcome == "client_closed"
    assert not await orm(lambda: Turn.objects.filter(status="in_flight").exists())


async def test_closing_a_body_that_ran_to_the_end_changes_nothing(pool):
    pool.fake.reply(text="read")
    reply = await opened(pool)
    body = StreamBody(reply, RecordingSink(streams=True))
    assert [data async for data in body if data != b"keepalive"] == [b"text:read", b"end"]
    body.close()
    assert (await final_log(reply)).outcome == "ok"


# -- with_keepalive: the timer beside the upstream stream (no database)


async def _slow(events: list[KimiEvent | Exception], pause: float, closed: list[bool]) -> AsyncIterator[KimiEvent]:
    try:
        for item in events:
            await asyncio.sleep(pause)
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        closed.append(True)


async def test_keepalive_heartbeats_fill_a_silence_and_the_events_pass_in_order():
    closed: list[bool] = []
    got = [e async for e in with_keepalive(_slow([TextDelta("a"), Done()], 0.2, closed), 0.05)]
    assert [e for e in got if not isinstance(e, Heartbeat)] == [TextDelta("a"), Done()]
    assert got.index(TextDelta("a")) >= 2  # heartbeats came first
    assert closed == [True]


async def test_keepalive_hands_an_upstream_failure_to_the_reader():
    closed: list[bool] = []
    with pytest.raises(ProtocolError):
        async for _ in with_keepalive(_slow([TextDelta("a"), ProtocolError("cut")], 0.0, closed), 5):
            pass


async def test_a_reader_that_stops_early_stops_the_upstream_pump():
    closed: list[bool] = []
    stream = with_keepalive(_slow([TextDelta("a")] * 100, 0.01, closed), 5)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()
    for _ in range(10):
        await asyncio.sleep(0)
    assert closed == [True]
