"""The legacy REST + SSE client against the fake Kimi server on loopback (protocol doc Part 1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
    account = await aaccount_for(fake_kimi.mint_account("lee", protocol="legacy"))
    return session_for(account, http=http)


async def test_it_creates_a_chat_and_streams_the_reply(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply(ANSWER, chunk_size=4)
    events, error = await run_turn(session, TurnRequest(text="Say hi in French"))
    assert error is None
    assert isinstance(events[0], ChatCreated) and fake_kimi.chats[events[0].chat_id].protocol == "legacy"
    assert text_of(events) == ANSWER
    assert events[-1] == Done(finish_reason="stop", message_id=events[-1].message_id)  # type: ignore[union-attr]
    assert fake_kimi.prompts() == ["Say hi in French"]
    assert [c.kind for c in fake_kimi.calls] == ["refresh", "create_chat", "stream"]  # no "fake traffic"


async def test_it_streams_k1_thinking(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply("No. 221 = 13 × 17.", thinking="Check small primes: 221 / 13 = 17.")
    events, error = await run_turn(session, TurnRequest(text="Is 221 prime?", thinking=True))
    assert error is None
    assert thinking_of(events).startswith("Check small primes")
    assert text_of(events).startswith("No. 221 = 13 × 17.")


async def test_it_reports_search_results(fake_kimi: FakeKimi, session: Any) -> None:
    hits = [
        ("Rust release notes", "https://blog.example.org/rust"),
        ("Rust changelog", "https://docs.example.org/changelog"),
    ]
    fake_kimi.reply("The latest stable release is 1.83.", search=hits)
    events, error = await run_turn(session, TurnRequest(text="Latest Rust?", search=True))
    assert error is None
    urls = [r.url for e in events if isinstance(e, SearchResults) for r in e.results]
    assert urls == ["https://blog.example.org/rust", "https://docs.example.org/changelog"]
    assert "[^1^]" in text_of(events)


async def test_it_reports_a_length_cut_reply(fake_kimi: FakeKimi, session: Any) -> None:
    fake_kimi.reply("A long answer", length=True, times=1)
    events, error = await run_turn(session, TurnRequest(text="Write a lot"))
    assert error is None and events[-1].finish_reason == "length"  # type: ignore[union-attr]


async def test_it_continues_a_chat_and_deletes_it(fake_kimi: FakeKimi, session: Any) -> None:
    first, _ = await run_turn(session, TurnRequest(text="My name is Ada."))
    chat_id = first[0].chat_id  # type: ignore[union-attr]
    second, error = await run_turn(session, TurnRequest(text="What is my name?", chat_id=chat_id))
    assert error is None and second[0] == ChatCreated(chat_id)
    assert fake_kimi.count("create_chat") == 1
    assert [m.text for m in fake_kimi.chats[chat_id].messages if m.role == "user"] == [
        "My name is Ada.",
        "What is my name?",
    ]
    await session.delete_chat(chat_id)
    assert fake_kimi.chats[chat_id].deleted
    await session.delete_chat(chat_id)
    events, error = await run_turn(session, TurnRequest(text="Again?", chat_id=chat_id))
    assert isinstance(error, ChatNotFound) and events == [ChatCreated(chat_id)]


@pytest.mark.parametrize(
    ("kind", "options", "expected", "partial"),
    [
        ("rate_limited", {}, RateLimited, ""),
        ("rate_limited", {"variant": "http", "retry_after": 9}, RateLimited, ""),
        ("overloaded", {"after_events": 2}, Overloaded, "Bonjour ! Ça va "),
        ("content_filter", {}, ContentFiltered, "Bonjour "),
        ("stream_busy", {}, StreamBusy, ""),
        ("http_5xx", {}, Unavailable, ""),
        ("http_429", {}, Unavailable, ""),
        ("http_429", {"retry_after": 9}, RateLimited, ""),  # bare 429 + Retry-After (C.8, C.13)
        ("cut", {"after_events": 4}, ProtocolError, "Bonjour ! Ça va "),
        ("empty_reply", {}, Overloaded, ""),
        ("done_then_error", {}, Overloaded, ANSWER),
    ],
)
async def test_it_maps_each_fault_to_its_error(
    fake_kimi: FakeKimi, session: Any, kind: str, options: dict[str, Any], expected: type, partial: str
) -> None:
    fake_kimi.reply(ANSWER, chunk_size=8)
    fake_kimi.fault(kind, **options)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert type(error) is expected
    assert isinstance(events[0], ChatCreated)
    assert text_of(events) == partial
    if options.get("retry_after"):
        assert error.retry_after == 9  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["unknown_kinds", "split_writes", "coalesce"])
async def test_it_reads_odd_but_valid_streams(fake_kimi: FakeKimi, session: Any, kind: str) -> None:
    fake_kimi.reply(ANSWER, chunk_size=5)
    fake_kimi.fault(kind)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert error is None and text_of(events) == ANSWER


@pytest.mark.parametrize("kind", ["access_expired", "auth_in_stream"])
async def test_it_refreshes_once_when_the_token_is_refused(fake_kimi: FakeKimi, session: Any, kind: str) -> None:
    fake_kimi.fault(kind, on="stream")
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert error is None and isinstance(events[-1], Done)
    assert fake_kimi.count("refresh") == 2
    assert fake_kimi.count("create_chat") == 1 and fake_kimi.count("stream") == 2


async def test_it_times_out_on_ping_only_streams(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    settings.KIMIPROXY_NO_PROGRESS_TIMEOUT = 0.6
    fake_kimi.fault("stall", interval=0.1, duration=3.0)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, NoProgressTimeout) and Heartbeat() in events


async def test_it_times_out_when_the_stream_goes_silent(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    settings.KIMIPROXY_IDLE_TIMEOUT = 0.3
    fake_kimi.fault("silence", after_events=2, duration=3.0)
    _, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, IdleTimeout)


async def test_it_times_out_before_the_first_byte(fake_kimi: FakeKimi, session: Any, settings: Any) -> None:
    await run_turn(session, TurnRequest(text="warm up"))
    settings.KIMIPROXY_FIRST_BYTE_TIMEOUT = 0.3
    fake_kimi.fault("silence", after_events=0, duration=3.0)
    events, error = await run_turn(session, TurnRequest(text="hello"))
    assert isinstance(error, FirstByteTimeout) and isinstance(events[0], ChatCreated)


async def test_it_sends_the_answer_changing_headers_and_an_honest_user_agent(
    fake_kimi: FakeKimi, session: Any, settings: Any
) -> None:
    # kimi-web-protocol.md C.4: x-language and r-timezone on legacy calls too, never Origin or Referer.
    events, error = await run_turn(session, TurnRequest(text="What day is it?"))
    assert error is None
    await session.delete_chat(events[0].chat_id)  # type: ignore[union-attr]
    settings.KIMIPROXY_TIMEZONE = "Europe/Paris"
    settings.KIMIPROXY_USER_AGENT = "acme-gateway/2"
    await run_turn(session, TurnRequest(text="Quel jour sommes-nous ?"))
    calls = [c for c in fake_kimi.calls if c.kind in ("refresh", "create_chat", "stream", "delete")]
    assert [c.kind for c in calls] == ["refresh", "create_chat", "stream", "delete", "create_chat", "stream"]
    for call in calls:
        assert not {"origin", "referer", "x-msh-version"} & set(call.headers)
        assert call.headers["x-language"] == "en-US"
    assert [(c.headers["r-timezone"], c.headers["user-agent"]) for c in calls[3:5]] == [
        ("UTC", f"kimiproxy/{__version__}"),
        ("Europe/Paris", "acme-gateway/2"),
    ]


@pytest.mark.parametrize(
    ("request_fields", "model"),
    [({}, None), ({"thinking": True}, "k1.5"), ({"reasoning_effort": "low"}, "k1.5"),
     ({"thinking": True, "reasoning_effort": "none"}, None)],
)  # fmt: skip
async def test_it_asks_for_the_thinking_model_when_the_client_wants_reasoning(
    fake_kimi: FakeKimi, session: Any, request_fields: dict[str, Any], model: str | None
) -> None:
    # The legacy stream has no effort: any effort but "none" picks the thinking model (doc 1.12, C.6).
    _, error = await run_turn(session, TurnRequest(text="Is 221 prime?", **request_fields))
    assert error is None
    assert next(c for c in fake_kimi.calls if c.kind == "stream").body.get("model") == model
