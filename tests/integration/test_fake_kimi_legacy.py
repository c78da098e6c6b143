"""The fake's legacy side, driven with raw httpx: refresh, chats, SSE, files (doc Part 1)."""

from __future__ import annotations

import httpx
import pytest

from gateway.kimi.fake import FakeKimi
from tests.fixtures_kimi import sse_events


@pytest.fixture
def http(fake_kimi: FakeKimi) -> httpx.Client:
    with httpx.Client(base_url=fake_kimi.url, timeout=5) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def stream(http: httpx.Client, token: str, chat_id: str, content: str, **extra: object) -> httpx.Response:
    body = {"kimiplus_id": "kimi", "messages": [{"role": "user", "content": content}], "refs": [], "use_search": False}
    body.update(extra)
    return http.post(f"/api/chat/{chat_id}/completion/stream", json=body, headers=bearer(token))


def test_it_serves_refresh_user_create_stream_and_delete(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("lee", protocol="legacy")
    fake_kimi.reply(chunks=["Bon", "jour !"])

    tokens = http.get("/api/auth/token/refresh", headers=bearer(account.refresh_token)).json()
    access = tokens["access_token"]
    user = http.get("/api/user", headers=bearer(access)).json()
    created = http.post(
        "/api/chat",
        json={"enter_method": "new_chat", "kimiplus_id": "kimi", "name": "未命名会话"},
        headers=bearer(access),
    )
    chat_id = created.json()["id"]
    answer = stream(http, access, chat_id, 'Read <url id="" type="url">https://example.org</url>')
    deleted = http.delete(f"/api/chat/{chat_id}", headers=bearer(access))
    after = stream(http, access, chat_id, "again")

    assert tokens["refresh_token"] != account.refresh_token
    assert user["id"] == account.user_id and len(user["id"]) == 20
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert [e["event"] for e in events] == ["req", "resp", "cmpl", "cmpl", "all_done"]
    assert events[0]["content"].startswith("Read <url") and events[1]["group_id"] == events[0]["group_id"]
    assert "".join(e["text"] for e in events if e["event"] == "cmpl") == "Bonjour !"
    assert fake_kimi.prompts("lee") == ["Read https://example.org"]  # doc 1.8: URL tags unwrapped
    assert deleted.status_code == 200 and deleted.json() == {}
    assert after.status_code == 404 and after.json()["error_type"] == "chat.not_found"


def test_it_refuses_expired_and_revoked_tokens(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    expired = fake_kimi.mint_account("old", protocol="legacy", access_ttl=0)
    fake_kimi.revoke_refresh("old")

    user = http.get("/api/user", headers=bearer(expired.access_token))
    refresh = http.get("/api/auth/token/refresh", headers=bearer(expired.refresh_token))

    for response in (user, refresh):
        assert response.status_code == 401 and response.json()["error_type"] == "auth.token.invalid"


def test_it_keeps_context_and_streams_search_and_thinking(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("lee", protocol="legacy").access_token
    chat_id = http.post("/api/chat", json={"name": "x"}, headers=bearer(token)).json()["id"]
    fake_kimi.reply("Rust 1.83", search=[{"title": "Rust notes", "url": "https://r.example"}], times=1)

    searched = sse_events(stream(http, token, chat_id, "Latest Rust?", use_search=True).text)
    thought = sse_events(stream(http, token, chat_id, "Is 221 prime?", model="k1.5").text)

    kinds = [e["event"] for e in searched]
    assert kinds[:2] == ["req", "resp"] and kinds[-1] == "all_done"
    assert [e["msg"]["type"] for e in searched if e["event"] == "search_plus"] == [
        "start",
        "start_res",
        "get_res",
        "done",
    ]
    assert "".join(e["text"] for e in searched if e["event"] == "cmpl") == "Rust 1.83 [^1^]"
    assert [e["event"] for e in thought][2] == "k1" and any("summary" in e for e in thought)
    assert [m.text for m in fake_kimi.chats[chat_id].messages if m.role == "user"] == ["Latest Rust?", "Is 221 prime?"]


def test_it_emits_length_and_continues(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("lee", protocol="legacy").access_token
    chat_id = http.post("/api/chat", json={}, headers=bearer(token)).json()["id"]
    fake_kimi.reply("The report covers Q3", length=True, times=1)
    fake_kimi.reply(" and Q4.", times=1)

    first = sse_events(stream(http, token, chat_id, "Summarise").text)
    body = {"segment_id": first[0]["id"], "action": "continue", "messages": [{"role": "user", "content": " "}]}
    second = sse_events(http.post(f"/api/chat/{chat_id}/completion/stream", json=body, headers=bearer(token)).text)

    assert [e["event"] for e in first][-2:] == ["length", "all_done"]
    assert "".join(e["text"] for e in second if e["event"] == "cmpl") == " and Q4."


def test_it_uploads_through_presign_put_file_and_parse_process(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("lee", protocol="legacy").access_token
    signed = http.post("/api/pre-sign-url", json={"action": "file", "name": "report.pdf"}, headers=bearer(token)).json()

    put = http.put(
        signed["url"].removeprefix(fake_kimi.url), content=b"%PDF-1.4", headers={"content-type": "application/pdf"}
    )
    body = {"type": "file", "name": "report.pdf", "object_name": signed["object_name"], "file_id": "", "chat_id": ""}
    first = http.post("/api/file", json=body, headers=bearer(token)).json()
    second = http.post("/api/file", json=body, headers=bearer(token)).json()
    parsed = sse_events(http.post("/api/file/parse_process", json={"ids": [first["id"]]}, headers=bearer(token)).text)

    assert put.status_code == 200
    assert (first["status"], second["status"], first["id"]) == ("initialized", "parsed", second["id"])
    assert [e["status"] for e in parsed] == ["parsing", "parsed"]
    assert fake_kimi.count("upload") == 1 and fake_kimi.calls[1].upload == b"%PDF-1.4"


def test_it_refuses_a_missing_content_and_counts_research(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    fake_kimi.configure(research_total=1)
    token = fake_kimi.mint_account("lee", protocol="legacy").access_token
    chat_id = http.post("/api/chat", json={}, headers=bearer(token)).json()["id"]

    empty = stream(http, token, chat_id, "")
    research = [sse_events(stream(http, token, chat_id, "dig", use_research=True).text) for _ in range(2)]
    usage = http.get("/api/chat/research/usage", headers=bearer(token)).json()

    assert empty.status_code == 400 and empty.json()["detail"] == ["Content is a required field"]
    assert research[0][-1]["event"] == "all_done"
    assert research[1][-1]["error"]["error_type"] == "chat.quota_exceeded"
    assert usage == {"remain": 0, "total": 1, "used": 1}
