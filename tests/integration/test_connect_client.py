"""The Connect client against the fake Kimi server on loopback (protocol doc Part 2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.jwt_claims import jwt_claims
from gateway.kimi import session_for
from gateway.kimi.base import (
    ChatCreated,
    ChatNotFound,
    ContentFiltered,
    Done,
    FirstByteTimeout,
    Heartbeat,
    IdleTimeout,
    NoProgressTimeout,
    Overloaded,
    ProtocolError,
    RateLimited,
    SearchResult,
    SearchResults,
    StreamBusy,
    TurnRequest,
    Unavailable,
)
from gateway.kimi.fake import FakeKimi
from kimiproxy import __version__
from tests.integration.kimi_client_helpers import (
    aaccount_for,
    close_worker_connections,
    http,
    run_turn,
    text_of,
    thinking_of,
)

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest

ANSWER = "Bonjour ! Ça va très bien, merci 🙂"


@pytest.fixture
async def session(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> Any:
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol="connect"))
    return session_for(account, http=http)


async def test_it_streams_a_plain_reply(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply(ANSWER, chunk_size=3)
    events, error = await run_turn(session, TurnRequest(text="Say hi"))
    assert error is None
    assert isinstance(events[0], ChatCreated) and events[0].chat_id in fake_kimi.chats
    assert text_of(events) == ANSWER
    chat = fake_kimi.chats[events[0].chat_id]
    assert isinstance(events[-1], Done) and events[-1].message_id == chat.messages[-1].id
    assert fake_kimi.prompts() == ["Say hi"]
    call = next(c for c in fake_kimi.calls if c.kind == "chat")
    claims = jwt_claims(fake_kimi.account("alice").access_token) or {}
    assert call.headers["x-msh-device-id"] == claims["device_id"]
    assert call.headers["x-traffic-id"] == claims["sub"]


async def test_it_streams_thinking_then_text(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply("No: 221 = 13 x 17.", thinking="Try small primes: 13 x 17 = 221.")
    events, error = await run_turn(session, TurnRequest(text="Is 221 prime?", thinking=True))
    assert error is None
    assert thinking_of(events) == "Try small primes: 13 x 17 = 221."
    assert text_of(events).startswith("No: 221 = 13 x 17.")


@pytest.mark.parametrize("citations", ["caret", "cite"])
async def test_it_reports_search_results_and_caret_citations(fake_kimi: FakeKimi, session: Any, citations: str) -> None:
    hits = [
        ("Paris forecast", "https://weather.example/paris", "Sunny", "Weather"),
        ("Météo", "https://meteo.example/", "", ""),
    ]
    fake_kimi.reply("It is sunny.", search=hits, citations=citations)
    events, error = await run_turn(session, TurnRequest(text="Weather in Paris?", search=True))
    assert error is None
    results = [r for e in events if isinstance(e, SearchResults) for r in e.results]
    assert results == [
        SearchResult("Paris forecast", "https://weather.example/paris", "Sunny", "Weather"),
        SearchResult("Météo", "https://meteo.example/"),
    ]
    assert text_of(events) == "It is sunny. [^1^][^2^]"
    body = next(c for c in fake_kimi.calls if c.kind == "chat").body
    assert body["tools"] == [{"type": "TOOL_TYPE_SEARCH", "search": {}}]


async def test_it_continues_a_chat_and_deletes_it(fake_kimi: FakeKimi, session: Any) -> None:
    first, _ = await run_turn(session, TurnRequest(text="My name is Ada."))
    chat_id, done = first[0].chat_id, first[-1]  # type: ignore[union-attr]
    second, error = await run_turn(
        session, TurnRequest(text="What is my name?", chat_id=chat_id, parent_id=done.message_id)
    )  # type: ignore[union-attr]
    assert error is None and second[0] == ChatCreated(chat_id)
    assert [m.role for m in fake_kimi.chats[chat_id].messages] == ["user", "assistant", "user", "assistant"]
    assert fake_kimi.chats[chat_id].messages[2].parent_id == done.message_id  # type: ignore[union-attr]
    await session.delete_chat(chat_id)
    assert fake_kimi.chats[chat_id].deleted
    await session.delete_chat(chat_id)  # already gone: not an error
    _, error = await run_turn(session, TurnRequest(text="Again?", chat_id=chat_id, parent_id=done.message_id))  # type: ignore[union-attr]
    assert isinstance(error, ChatNotFound)


@pytest.mark.parametrize(
    ("kind", "options", "expected", "partial"),
    [
        ("rate_limited", {"retry_after": 42}, RateLimited, ""),
        ("rate_limited", {"variant": "permission_denied"}, RateLimited, ""),
        ("overloaded", {}, Overloaded, ""),
        ("overloaded", {"after_events": 2}, Overloaded, "Bonjour ! Ça va "),
        ("block_exception", {"after_events": 1}, Overloaded, "Bonjour "),
        ("content_filter", {}, ContentFiltered, "Bonjour "),
        ("stream_busy", {}, StreamBusy, ""),
        ("http_5xx", {}, Unavailable, ""),
        ("http_5xx", {"status": 503, "variant": "empty"}, Unavailable, ""),
        ("http_429", {}, Unavailable, ""),
        ("cut", {"after_events": 5}, ProtocolError, "Bonjour "),
        ("empty_reply", {}, Overloaded, ""),
        ("done_then_error", {}, Unavailable, ANSWER),
    ],
)
async def test_it_maps_each_fault_to_its_error(
    fake_kimi: FakeKimi, session: Any, kind: str, options: dict[str, Any], expected: type, partial: str
) -> None:
    fake_kimi.reply(ANSWER, chunk_size=8)
    fake_kimi.fault(kind, **options)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert type(error) is expected
    assert text_of(events) == partial
    if kind == "rate_limited" and "retry_after" in options:
        assert error.retry_after == 42  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["comma_masks", "unknown_kinds", "degrade", "split_writes", "coalesce"])
async def test_it_reads_odd_but_valid_streams(fake_kimi: FakeKimi, session: Any, kind: str) -> None:
    fake_kimi.reply(ANSWER, chunk_size=5, thinking="思考 🙂")
    fake_kimi.fault(kind)
    events, error = await run_turn(session, TurnRequest(text="hello", thinking=True))
    assert error is None
    assert text_of(events) == ANSWER and thinking_of(events) == "思考 🙂"


@pytest.mark.parametrize("kind", ["access_expired", "auth_in_stream"])
async def test_it_refreshes_once_when_the_token_is_refused(fake_kimi: FakeKimi, session: Any, kind: str) -> None:
    await run_turn(session, TurnRequest(text="warm up"))
    assert fake_kimi.count("refresh") == 1
    fake_kimi.fault(kind)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert error is None and isinstance(events[-1], Done)
    assert fake_kimi.count("refresh") == 2
    assert fake_kimi.count("chat") == 3


async def test_it_times_out_when_only_heartbeats_arrive(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    settings.KIMIPROXY_NO_PROGRESS_TIMEOUT = 0.6
    fake_kimi.fault("stall", interval=0.1, duration=3.0)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, NoProgressTimeout)
    assert events.count(Heartbeat()) >= 3


async def test_it_times_out_when_the_stream_goes_silent(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    settings.KIMIPROXY_IDLE_TIMEOUT = 0.3
    fake_kimi.fault("silence", after_events=3, duration=3.0)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, IdleTimeout)
    assert isinstance(events[0], ChatCreated)


async def test_it_times_out_before_the_first_byte(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    await run_turn(session, TurnRequest(text="warm up"))  # the refresh is not part of the budget under test
    settings.KIMIPROXY_FIRST_BYTE_TIMEOUT = 0.3
    fake_kimi.fault("silence", after_events=0, duration=3.0)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, FirstByteTimeout) and events == []


async def test_it_runs_the_agent_scenario_on_paid_accounts_only(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    free = session_for(await aaccount_for(fake_kimi.mint_account("free")), http=http)
    paid = session_for(await aaccount_for(fake_kimi.mint_account("paid", paid=True)), http=http)
    _, error = await run_turn(free, TurnRequest(text="Build a deck", agent_id="kimi-agent"))
    assert isinstance(error, RateLimited)  # plan-restricted model: another account may serve it
    events, error = await run_turn(paid, TurnRequest(text="Build a deck", agent_id="kimi-agent"))
    assert error is None and text_of(events)
    body = [c for c in fake_kimi.calls if c.kind == "chat"][-1].body
    assert (body["scenario"], body["options"]["agent_mode"]) == ("SCENARIO_OK_COMPUTER", "TYPE_NORMAL")
    # kimi-web-protocol.md C.3: the fake accepts every spelling and records the one that came.
    user = fake_kimi.chats[events[0].chat_id].messages[-2]  # type: ignore[union-attr]
    assert user.flags["agent_field"] == "kimiplus_id"


async def test_it_sends_the_answer_changing_headers_and_an_honest_user_agent(fake_kimi: FakeKimi, session: Any) -> None:
    # kimi-web-protocol.md C.4, with the defaults: en-US, UTC, kimiproxy/<version>.
    events, error = await run_turn(session, TurnRequest(text="What day is it?"))
    assert error is None
    await session.delete_chat(events[0].chat_id)  # type: ignore[union-attr]
    calls = [c for c in fake_kimi.calls if c.kind in ("refresh", "chat", "delete")]
    assert [c.kind for c in calls] == ["refresh", "chat", "delete"]
    for call in calls:
        assert call.headers["x-language"] == "en-US"
        assert call.headers["r-timezone"] == "UTC"
        assert call.headers["user-agent"] == f"kimiproxy/{__version__}"
        assert not {"origin", "referer", "x-msh-version"} & set(call.headers)


async def test_it_sends_the_configured_language_time_zone_and_user_agent(
    fake_kimi: FakeKimi, session: Any, settings: Any
) -> None:
    settings.KIMIPROXY_LANGUAGE = "zh-CN"
    settings.KIMIPROXY_TIMEZONE = "Asia/Shanghai"
    settings.KIMIPROXY_USER_AGENT = "acme-gateway/2 (ops@example.org)"
    _, error = await run_turn(session, TurnRequest(text="今天几号？"))
    assert error is None
    for call in (c for c in fake_kimi.calls if c.kind in ("refresh", "chat")):
        assert (call.headers["x-language"], call.headers["r-timezone"]) == ("zh-CN", "Asia/Shanghai")
        assert call.headers["user-agent"] == "acme-gateway/2 (ops@example.org)"


@pytest.mark.parametrize(
    ("request_fields", "effort"),
    [
        ({}, "REASONING_EFFORT_NONE"),  # the web app's "Instant"
        ({"thinking": True}, "REASONING_EFFORT_LOW"),  # k2d6-chat's catalogue effort (doc 2.12)
        ({"thinking": True, "agent_id": "kimi-agent"}, "REASONING_EFFORT_HIGH"),  # K3's
        ({"agent_id": "kimi-agent"}, "REASONING_EFFORT_LOW"),  # K3 offers no NONE
        ({"reasoning_effort": "high"}, "REASONING_EFFORT_LOW"),  # capped: k2d6-chat offers NONE, LOW (2.12)
        ({"reasoning_effort": "high", "agent_id": "kimi-agent"}, "REASONING_EFFORT_HIGH"),
        ({"reasoning_effort": "low"}, "REASONING_EFFORT_LOW"),
        ({"thinking": True, "reasoning_effort": "none"}, "REASONING_EFFORT_NONE"),
    ],
)
async def test_it_always_sends_thinking_and_steers_it_with_the_effort(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, request_fields: dict[str, Any], effort: str
) -> None:
    # kimi-web-protocol.md C.6: `thinking: true` as the web app sends it; the effort says how much.
    session = session_for(await aaccount_for(fake_kimi.mint_account("paid", paid=True)), http=http)
    events, error = await run_turn(session, TurnRequest(text="Is 221 prime?", **request_fields))
    assert error is None
    options = [c for c in fake_kimi.calls if c.kind == "chat"][-1].body["options"]
    assert (options["thinking"], options["reasoning_effort"]) == (True, effort)
    user = fake_kimi.chats[events[0].chat_id].messages[-2]  # type: ignore[union-attr]
    assert user.flags["thinking"] is (effort != "REASONING_EFFORT_NONE")


THINKING = "Try 13 x 17."


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("think_flags", {}),  # block.text flagged "thinking"
        ("think_flags", {"variant": "multistage"}),  # text inside a thinking block.multiStage
        ("opless", {}),  # frames without `op`, deltas
        ("opless", {"variant": "cumulative"}),  # frames without `op`, the block so far
        ("blocks_only", {}),  # the answer only in the completed message's blocks
        ("no_end_frame", {}),  # closed after `done` without the 0x02 frame
    ],
)
async def test_it_reads_the_stream_shapes_peers_report(
    fake_kimi: FakeKimi, session: Any, kind: str, options: dict[str, Any]
) -> None:
    # kimi-web-protocol.md C.8: each shape gives the same answer and reasoning as the documented one.
    fake_kimi.reply(ANSWER, chunk_size=5, thinking=THINKING)
    fake_kimi.fault(kind, **options)
    events, error = await run_turn(session, TurnRequest(text="hello", thinking=True))
    assert error is None and isinstance(events[-1], Done)
    assert text_of(events) == ANSWER and thinking_of(events) == THINKING


async def test_it_joins_successive_text_blocks_with_a_newline(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply(chunks=["First ", "part.", "Second ", "part."])
    fake_kimi.fault("split_blocks")  # two text blocks with their own ids (C.8)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert error is None
    assert text_of(events) == "First part.\nSecond part."


async def test_it_reads_a_bare_429_with_retry_after_as_a_rate_limit(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.fault("http_429", retry_after=120)  # no Connect body (C.8)
    _, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, RateLimited) and error.retry_after == 120
