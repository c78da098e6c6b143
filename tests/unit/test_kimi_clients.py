"""Both upstream clients against ``httpx.MockTransport``: request shapes, headers, retries, mapping.

No database and no sockets: the sessions get a stub token source (the DB-backed one is tested in
tests/integration/test_tokens.py against the fake server).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.kimi.base import (
    AuthError,
    ChatCreated,
    ConnectTimeout,
    Done,
    FileRef,
    RateLimited,
    StreamBusy,
    TextDelta,
    TurnRequest,
    Unavailable,
)
from gateway.kimi.connect.session import ConnectSession, chat_body
from gateway.kimi.framing import ConnectDecoder, encode_envelope
from gateway.kimi.legacy.session import LegacySession, stream_body


def jwt(**claims: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512'})}.{part(claims)}.c2ln"


TOKEN_1 = jwt(sub="user1", device_id="7000000000000000001", ssid="1730000000000000001", n=1)
TOKEN_2 = jwt(sub="user1", device_id="7000000000000000001", ssid="1730000000000000001", n=2)


class StubTokens:
    """Hands out TOKEN_1, then TOKEN_2 after a rejection; records what was rejected."""

    def __init__(self) -> None:
        self.current = TOKEN_1
        self.rejected: list[str] = []

    async def access_token(self, *, rejected: str | None = None) -> str:
        if rejected:
            self.rejected.append(rejected)
            self.current = TOKEN_2
        return self.current

    async def refresh_now(self) -> str:
        return await self.access_token(rejected=self.current)


def connect_reply(*frames: dict[str, Any], end: dict[str, Any] | None = None) -> bytes:
    body = b"".join(encode_envelope(json.dumps(f).encode()) for f in frames)
    return body + encode_envelope(json.dumps(end or {}).encode(), flags=0x02)


PLAIN = connect_reply(
    {"op": "set", "chat": {"id": "chat-1"}},
    {"op": "set", "mask": "message", "message": {"id": "a1", "role": "assistant"}},
    {"op": "set", "mask": "block.text", "block": {"id": "1", "text": {"content": "Hi"}}},
    {"done": {}},
)


def make(handler: Callable[[httpx.Request], httpx.Response], cls: type = ConnectSession) -> tuple[Any, StubTokens]:
    tokens = StubTokens()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return cls(tokens=tokens, http=http), tokens


async def collect(session: Any, request: TurnRequest) -> list[Any]:
    async with session.turn(request) as events:
        return [event async for event in events]


async def test_it_sends_one_enveloped_chat_request_with_identity_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PLAIN, headers={"content-type": "application/connect+json"})

    session, _ = make(handler)
    events = await collect(session, TurnRequest(text="hello", search=True))
    assert events == [ChatCreated("chat-1"), TextDelta("Hi"), Done(message_id="a1")]
    request = seen[0]
    assert request.url.path == "/apiv2/kimi.gateway.chat.v1.ChatService/Chat"
    assert request.headers["content-type"] == "application/connect+json"
    assert request.headers["connect-protocol-version"] == "1"
    assert request.headers["x-msh-device-id"] == "7000000000000000001"
    assert request.headers["x-msh-session-id"] == "1730000000000000001"
    assert request.headers["x-traffic-id"] == "user1"
    assert request.headers["x-msh-platform"] == "web"
    frames = ConnectDecoder().decode(request.content)
    assert len(frames) == 1
    body = json.loads(frames[0].data)
    assert body == chat_body(TurnRequest(text="hello", search=True))
    assert body["tools"] == [{"type": "TOOL_TYPE_SEARCH", "search": {}}]
    assert body["message"]["blocks"] == [{"message_id": "", "text": {"content": "hello"}}]
    assert "chat_id" not in body and "parent_id" not in body["message"]


def test_it_builds_continuation_agent_and_file_bodies() -> None:
    files = (FileRef(file_id="f1", name="a.pdf", kind="file"),)
    body = chat_body(TurnRequest(text="more", chat_id="c1", parent_id="a1", thinking=True, files=files))
    assert body["chat_id"] == "c1" and body["message"]["parent_id"] == "a1"
    assert body["message"]["blocks"][1] == {"file": {"id": "f1", "status": "PROCESS_STATUS_SUCCESS"}}
    assert body["options"]["thinking"] is True and body["options"]["reasoning_effort"] == "REASONING_EFFORT_LOW"
    assert body["tools"] == []
    agent = chat_body(TurnRequest(text="build", agent_id="kimi-agent"))
    assert agent["scenario"] == agent["message"]["scenario"] == "SCENARIO_OK_COMPUTER"
    assert agent["kimiplus_id"] == "ok-computer" and "kimi_plus_id" not in agent  # C.3
    assert agent["options"]["agent_mode"] == "TYPE_NORMAL" and agent["options"]["model"] == "k3-agent"
    assert chat_body(TurnRequest(text="x", model="k2d6-chat"))["options"]["model"] == "k2d6-chat"
    swarm = chat_body(TurnRequest(text="x", model="k3-agent-swarm"))
    assert swarm["scenario"] == "SCENARIO_OK_COMPUTER_SWARM" and swarm["options"]["agent_mode"] == "TYPE_ULTRA"


async def test_it_refreshes_and_retries_once_on_401() -> None:
    auths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auths.append(request.headers["authorization"])
        if request.headers["authorization"] == f"Bearer {TOKEN_1}":
            return httpx.Response(401, json={"code": "unauthenticated", "message": "invalid user token"})
        return httpx.Response(200, content=PLAIN)

    session, tokens = make(handler)
    events = await collect(session, TurnRequest(text="hello"))
    assert events[-1] == Done(message_id="a1")
    assert auths == [f"Bearer {TOKEN_1}", f"Bearer {TOKEN_2}"]
    assert tokens.rejected == [TOKEN_1]


async def test_it_retries_an_auth_error_reported_in_the_stream() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(200, content=connect_reply(end={"error": {"code": "unauthenticated"}}))
        return httpx.Response(200, content=PLAIN)

    session, tokens = make(handler)
    assert (await collect(session, TurnRequest(text="hi")))[0] == ChatCreated("chat-1")
    assert len(calls) == 2 and tokens.rejected == [TOKEN_1]


async def test_it_gives_up_after_the_second_401() -> None:
    session, tokens = make(lambda request: httpx.Response(401, json={"code": "unauthenticated"}))
    with pytest.raises(AuthError):
        await collect(session, TurnRequest(text="hello"))
    assert tokens.rejected == [TOKEN_1]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(502, text="<html>bad gateway</html>"), Unavailable),
        (httpx.Response(429), Unavailable),
        (httpx.Response(429, headers={"retry-after": "7"}), RateLimited),  # bare 429 + Retry-After (C.8)
        (
            httpx.Response(429, json={"code": "resource_exhausted", "message": "quota"}, headers={"retry-after": "7"}),
            RateLimited,
        ),
        (httpx.Response(200, content=connect_reply(end={"error": {"code": "failed_precondition"}})), StreamBusy),
    ],
)
async def test_it_maps_failures_before_the_first_event(response: httpx.Response, expected: type) -> None:
    session, _ = make(lambda request: response)
    with pytest.raises(expected) as caught:
        await collect(session, TurnRequest(text="hello"))
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7


async def test_it_maps_a_connect_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    session, _ = make(handler)
    with pytest.raises(ConnectTimeout):
        await collect(session, TurnRequest(text="hello"))


async def test_it_creates_a_legacy_chat_and_announces_it_before_streaming() -> None:
    seen: list[httpx.Request] = []
    sse = b'data: {"event":"req","id":"s1"}\n\ndata: {"event":"cmpl","text":"Bon"}\n\ndata: {"event":"all_done"}\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/chat":
            return httpx.Response(200, json={"id": "cq0chat0000000000001"})
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    session, _ = make(handler, LegacySession)
    request = TurnRequest(text="Say hi", search=True, thinking=True)
    async with session.turn(request) as events:
        first = await anext(events)
        assert first == ChatCreated("cq0chat0000000000001")
        assert [r.url.path for r in seen] == ["/api/chat"]
        rest = [event async for event in events]
    assert rest == [TextDelta("Bon"), Done()]
    assert seen[1].url.path == "/api/chat/cq0chat0000000000001/completion/stream"
    body = json.loads(seen[1].content)
    assert body == stream_body(request)
    assert body["use_search"] is True and body["model"] == "k1.5" and body["kimiplus_id"] == "kimi"
    assert json.loads(seen[0].content)["kimiplus_id"] == "kimi"
    assert seen[1].headers["x-traffic-id"] == "user1"


def test_it_lists_the_flags_each_protocol_ignores() -> None:
    request = TurnRequest(text="x", research=True, math=True, model="k2d6-chat")
    assert ConnectSession.unsupported_flags(request) == ["research", "math"]
    assert LegacySession.unsupported_flags(request) == ["model"]
    assert LegacySession.unsupported_flags(TurnRequest(text="x", agent_id="kimi-agent")) == ["agent_id"]
