"""The ``/_fake/`` control API over HTTP (for a fake in another process) and the recording rules."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.kimi.fake import FakeKimi
from tests.fixtures_kimi import CHAT_PATH, connect_chat_body, connect_envelope, connect_frames, connect_headers


@pytest.fixture
def http(fake_kimi: FakeKimi) -> httpx.Client:
    with httpx.Client(base_url=fake_kimi.url, timeout=5) as client:
        yield client


def test_it_is_driven_entirely_over_http(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    assert http.post("/_fake/reset").json() == {}
    account = http.post("/_fake/accounts", json={"name": "remote", "paid": True}).json()
    http.post("/_fake/reply", json={"text": "scripted", "search": [{"title": "T", "url": "https://u.example"}]})
    http.post("/_fake/fault", json={"kind": "http_5xx", "status": 503, "variant": "empty"})

    failed = http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=connect_headers(account["access_token"])
    )
    served = http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=connect_headers(account["access_token"])
    )
    calls = http.get("/_fake/calls", params={"kind": "chat"}).json()["calls"]
    stats = http.get("/_fake/stats").json()

    assert account["user_id"] and account["protocol"] == "connect" and account["paid"] is True
    assert failed.status_code == 503 and failed.content == b""
    text = "".join(
        f["block"]["text"]["content"]
        for _, f in connect_frames(served.content)
        if "block" in f and "text" in f["block"]
    )
    assert text == "scripted"
    assert [c["status"] for c in calls] == [503, 200] and calls[0]["account"] == "remote"
    assert stats["calls"] == {"chat": 2} and stats["chats_created"] == 1 and stats["active_streams"] == 0
    assert http.get("/_fake/prompts", params={"account": "remote"}).json() == {"prompts": ["hi"]}
    assert http.get("/_fake/chats").json()["chats"][0]["account"] == "remote"


def test_it_answers_400_to_bad_control_calls(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    assert http.post("/_fake/fault", json={"kind": "no_such_fault"}).status_code == 400
    assert http.post("/_fake/config", json={"no_such_option": 1}).status_code == 400
    assert http.get("/_fake/nothing").status_code == 404


def test_it_never_records_or_shows_a_token(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("alice")
    path = "/api/account.gateway.v1.AuthService/RefreshToken"
    rotated = http.post(path, json={"refreshToken": account.refresh_token}).json()
    http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=connect_headers(rotated["accessToken"])
    )

    recorded = json.dumps(http.get("/_fake/calls").json()) + repr(fake_kimi.calls) + repr(account)

    for token in (account.refresh_token, account.access_token, rotated["accessToken"], rotated["refreshToken"]):
        assert token not in recorded
    assert fake_kimi.calls[1].headers["authorization"] == "Bearer ***"


def test_it_enforces_msh_headers_when_switched_on(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    fake_kimi.configure(enforce_msh_headers=True)
    account = fake_kimi.mint_account("alice")
    claims = json.loads(_b64decode(account.access_token.split(".")[1]))
    good = connect_headers(account.access_token) | {
        "x-msh-device-id": claims["device_id"],
        "x-msh-session-id": claims["ssid"],
        "x-traffic-id": claims["sub"],
    }

    bare = http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=connect_headers(account.access_token)
    )
    matched = http.post(CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=good)

    assert bare.status_code == 401 and matched.status_code == 200
    assert claims["iss"] == "account" and claims["exp"] - claims["iat"] == 900


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
