"""Injected faults, driven with raw httpx (README.md "Faults")."""

from __future__ import annotations

import httpx
import pytest

from gateway.kimi.fake import FakeKimi
from gateway.kimi.fake.connect_turn import unmappable_markers
from gateway.kimi.fake.writes import envelope, shape_writes
from tests.fixtures_kimi import (
    CHAT_PATH,
    connect_chat_body,
    connect_envelope,
    connect_frames,
    connect_headers,
    sse_events,
)


@pytest.fixture
def http(fake_kimi: FakeKimi) -> httpx.Client:
    with httpx.Client(base_url=fake_kimi.url, timeout=5) as client:
        yield client


def post_chat(http: httpx.Client, token: str, text: str = "hi") -> httpx.Response:
    return http.post(CHAT_PATH, content=connect_envelope(connect_chat_body(text)), headers=connect_headers(token))


def texts(frames: list[tuple[int, dict]]) -> str:
    return "".join(f["block"]["text"]["content"] for _, f in frames if f.get("mask", "").startswith("block.text"))


def test_it_ends_an_overloaded_stream_with_done_then_resource_exhausted(
    fake_kimi: FakeKimi, http: httpx.Client
) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.reply(chunks=["Part", "ial", " more"])
    fake_kimi.fault("overloaded", after_events=2)

    frames = connect_frames(post_chat(http, token).content)
    again = connect_frames(post_chat(http, token).content)

    assert texts(frames) == "Partial"
    assert "done" in frames[-2][1] and frames[-1][0] == 2
    error = frames[-1][1]["error"]
    assert error["code"] == "resource_exhausted"
    assert error["details"][0]["debug"]["reason"] == "REASON_SERVER_OVERLOADED_FOR_FREE_USER"
    assert again[-1] == (2, {})  # times=1


def test_it_retracts_with_a_block_exception(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault("block_exception")

    frames = [f for _, f in connect_frames(post_chat(http, token).content)]

    exception = next(f["block"]["exception"]["error"] for f in frames if f.get("mask") == "block.exception")
    assert exception["reason"] == "REASON_COMPLETION_OVERLOADED" and exception["severity"] == "SEVERITY_BLOCK_RETRACT"
    assert frames[-1] == {}


def test_it_cuts_the_connection_without_an_end_frame(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault("cut", after_events=4)
    received = b""

    body = connect_envelope(connect_chat_body("hi"))

    with (
        pytest.raises(httpx.RemoteProtocolError),  # the cut shows while reading the body
        http.stream("POST", CHAT_PATH, content=body, headers=connect_headers(token)) as response,
    ):
        for chunk in response.iter_raw():
            received += chunk

    assert [flag for flag, _ in connect_frames(received)] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("kind", "status"),
    [("http_5xx", 502), ("http_429", 429), ("access_expired", 401)],
)
def test_it_answers_http_errors_before_any_frame_once(
    fake_kimi: FakeKimi, http: httpx.Client, kind: str, status: int
) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault(kind, account="alice", retry_after=7)

    failed, retried = post_chat(http, token), post_chat(http, token)

    assert failed.status_code == status
    if kind == "http_429":
        assert failed.content == b"" and failed.headers["retry-after"] == "7"
    assert retried.status_code == 200 and connect_frames(retried.content)[-1] == (2, {})


def test_it_targets_faults_at_one_account(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    alice, bob = fake_kimi.mint_account("alice"), fake_kimi.mint_account("bob")
    fake_kimi.fault("rate_limited", account="bob", times=None)

    assert connect_frames(post_chat(http, alice.access_token).content)[-1] == (2, {})
    for _ in range(2):
        error = connect_frames(post_chat(http, bob.access_token).content)[-1][1]["error"]
        assert error["code"] == "resource_exhausted"
        assert error["details"][0]["debug"]["reason"] != "REASON_SERVER_OVERLOADED_FOR_FREE_USER"


@pytest.mark.parametrize(("variant", "code"), [(None, "failed_precondition"), ("aborted", "aborted")])
def test_it_reports_a_busy_stream(fake_kimi: FakeKimi, http: httpx.Client, variant: str | None, code: str) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault("stream_busy", variant=variant)

    frames = connect_frames(post_chat(http, token).content)

    assert len(frames) == 1 and frames[0][1]["error"]["code"] == code


def test_it_stalls_with_heartbeats_then_answers(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault("stall", interval=0.01, duration=0.05)

    frames = [f for _, f in connect_frames(post_chat(http, token).content)]

    assistant_at = [i for i, f in enumerate(frames) if f.get("mask") == "message"][1]
    assert all("heartbeat" in f for f in frames[assistant_at + 1 : assistant_at + 6])
    assert frames[-1] == {} and texts([(0, f) for f in frames]) == "Hello from fake Kimi."


def test_it_keeps_envelopes_intact_when_writes_are_split_and_coalesced(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.reply("héllo wörld ✓", chunk_size=3)
    fake_kimi.fault("split_writes", times=None)
    fake_kimi.fault("coalesce", times=None)
    fake_kimi.fault("unknown_kinds")
    fake_kimi.fault("degrade")

    frames = connect_frames(post_chat(http, token).content)

    # unknown_kinds ends the answer with citations naming no search call (a gateway strips them, C.1).
    assert texts(frames) == "héllo wörld ✓" + "".join(unmappable_markers(["héllo wörld ✓"]))
    assert any("notification" in f for _, f in frames) and any("telemetry" in f for _, f in frames)
    assert any(f.get("op") == "merge" and f.get("mask") == "message.feedback" for _, f in frames)


def test_it_splits_inside_the_header_and_inside_a_utf8_character() -> None:
    frame = envelope({"text": "é"})

    pieces = shape_writes([frame], split=True, coalesce=False, header_cut=2)

    assert b"".join(pieces) == frame and len(pieces[0]) == 2
    assert any(piece.endswith(b"\xc3") for piece in pieces)  # the lead byte of "é" ends a write


def test_it_injects_legacy_errors_and_unknown_events(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("lee", protocol="legacy").access_token
    auth = {"authorization": f"Bearer {token}"}
    chat_id = http.post("/api/chat", json={}, headers=auth).json()["id"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    path = f"/api/chat/{chat_id}/completion/stream"
    fake_kimi.fault("content_filter", after_events=1)
    fake_kimi.fault("unknown_kinds")
    fake_kimi.fault("split_writes")

    filtered = sse_events(http.post(path, json=body, headers=auth).text)
    fake_kimi.fault("stream_busy")
    busy = http.post(path, json=body, headers=auth)

    events = ["req", "resp", "rename", "loading", "ping", "cmpl", "search_plus", "cmpl", "error"]
    assert [e["event"] for e in filtered] == events
    assert filtered[5] == {"event": "cmpl", "text": "", "view": "plain"}
    assert filtered[-1]["error"]["error_type"] == "openai.completion.content_filter"
    assert busy.status_code == 400 and busy.json()["error_type"] == "chat.user_stream_pushing"


def test_it_refuses_a_refresh_when_asked(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("alice")
    fake_kimi.fault("refresh_invalid", variant="403")
    path = "/api/account.gateway.v1.AuthService/RefreshToken"

    refused = http.post(path, json={"refresh_token": account.refresh_token})
    accepted = http.post(path, json={"refresh_token": account.refresh_token})

    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert accepted.status_code == 200


async def test_it_refuses_a_second_stream_while_the_chat_is_generating(fake_kimi: FakeKimi) -> None:
    token = fake_kimi.mint_account("alice").access_token
    async with httpx.AsyncClient(base_url=fake_kimi.url, timeout=5) as client:
        first = await client.post(
            CHAT_PATH, content=connect_envelope(connect_chat_body("one")), headers=connect_headers(token)
        )
        chat_id = connect_frames(first.content)[0][1]["chat"]["id"]
        fake_kimi.reply("slow", delay=0.5, times=1)
        body = connect_envelope(connect_chat_body("two", chat_id=chat_id))
        async with client.stream("POST", CHAT_PATH, content=body, headers=connect_headers(token)) as slow:
            chunks = slow.aiter_raw()  # keep a reference: a collected iterator would close the stream
            await anext(chunks)  # generating now
            busy = await client.post(CHAT_PATH, content=body, headers=connect_headers(token))

    assert connect_frames(busy.content)[0][1]["error"]["code"] == "failed_precondition"


def test_it_aims_http_faults_at_other_calls_with_on(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    chat_id = connect_frames(post_chat(http, token).content)[0][1]["chat"]["id"]
    fake_kimi.fault("http_5xx", on=["delete"], account="alice")
    path = "/apiv2/kimi.chat.v1.ChatService/DeleteChat"
    auth = {"authorization": f"Bearer {token}"}

    failed = http.post(path, json={"chat_id": chat_id}, headers=auth)
    retried = http.post(path, json={"chat_id": chat_id}, headers=auth)

    assert failed.status_code == 502 and failed.headers["content-type"] == "text/html"
    assert retried.status_code == 200 and fake_kimi.chats[chat_id].deleted
    assert fake_kimi.count("delete") == 2
