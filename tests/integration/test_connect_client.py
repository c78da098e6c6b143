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
    assert (body["scenario"], body["kimi_plus_id"], body["options"]["agent_mode"]) == (
        "SCENARIO_OK_COMPUTER",
        "ok-computer",
        "TYPE_NORMAL",
    )
