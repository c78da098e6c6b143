"""The fake's Connect side, driven with raw httpx: framing, tokens, the message tree, files (doc Part 2)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from gateway.kimi.fake import FakeKimi
from tests.fixtures_kimi import CHAT_PATH, connect_chat_body, connect_envelope, connect_frames, connect_headers

REFRESH_PATH = "/api/account.gateway.v1.AuthService/RefreshToken"


@pytest.fixture
def http(fake_kimi: FakeKimi) -> httpx.Client:
    with httpx.Client(base_url=fake_kimi.url, timeout=5) as client:
        yield client


def chat(http: httpx.Client, token: str, body: dict) -> list[tuple[int, dict]]:
    response = http.post(CHAT_PATH, content=connect_envelope(body), headers=connect_headers(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/connect+json"
    return connect_frames(response.content)


def frame_kind(frame: dict) -> str:
    if "mask" in frame:
        return frame["mask"]
    return next(k for k in ("chat", "heartbeat", "done", "notification", "message", "block") if k in frame)


def test_it_streams_a_plain_reply_in_the_documented_order(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("alice")
    fake_kimi.reply(chunks=["Bon", "jour !"])

    frames = chat(http, account.access_token, connect_chat_body("Say hi"))

    assert [flag for flag, _ in frames] == [0] * (len(frames) - 1) + [2]
    assert frames[-1][1] == {}
    kinds = [frame_kind(f) for _, f in frames[:-1]]
    assert kinds == [
        "chat", "heartbeat", "message", "message", "block.text", "block.text.content",
        "chat.name", "heartbeat", "message.status", "done",
    ]  # fmt: skip
    data = [f for _, f in frames[:-1]]
    offsets = [f["eventOffset"] for f in data if "heartbeat" not in f]
    assert offsets == list(range(1, len(offsets) + 1))
    chat_id = data[0]["chat"]["id"]
    user, assistant = data[2]["message"], data[3]["message"]
    assert user["parentId"] == chat_id and user["blocks"] == [{"id": "text_0_0", "text": {"content": "Say hi"}}]
    assert assistant["parentId"] == user["id"] and assistant["status"] == "MESSAGE_STATUS_GENERATING"
    assert data[4]["block"]["text"]["content"] + data[5]["block"]["text"]["content"] == "Bonjour !"
    assert data[8]["message"] == {"id": assistant["id"], "status": "MESSAGE_STATUS_COMPLETED"}
    stored = fake_kimi.chats[chat_id]
    assert [(m.role, m.text) for m in stored.messages] == [("user", "Say hi"), ("assistant", "Bonjour !")]
    assert fake_kimi.prompts("alice") == ["Say hi"]
    assert fake_kimi.count("chat", "alice") == 1


def test_it_rotates_tokens_on_refresh_and_keeps_the_previous_one(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("alice")

    first = http.post(REFRESH_PATH, json={"refresh_token": account.refresh_token})
    second = http.post(REFRESH_PATH, json={"refreshToken": first.json()["refreshToken"]})

    assert first.status_code == second.status_code == 200
    assert first.json()["refreshToken"] != account.refresh_token
    assert second.json()["accessToken"] != first.json()["accessToken"]
    # the token just superseded stays valid (doc 1.4.2); the one before it does not
    assert http.post(REFRESH_PATH, json={"refresh_token": first.json()["refreshToken"]}).status_code == 200
    refused = http.post(REFRESH_PATH, json={"refresh_token": account.refresh_token})
    assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
    assert fake_kimi.count("refresh", "alice") == 3
    assert all("refresh_token" not in (c.body or {}) for c in fake_kimi.calls)


def test_it_refuses_a_token_across_accounts(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    alice, bob = fake_kimi.mint_account("alice"), fake_kimi.mint_account("bob")
    chat_id = chat(http, alice.access_token, connect_chat_body("hi"))[0][1]["chat"]["id"]
    # bob's signature over alice's claims: a forged token
    forged = ".".join(alice.access_token.split(".")[:2] + [bob.access_token.split(".")[2]])

    bobs_view = chat(http, bob.access_token, connect_chat_body("again", chat_id=chat_id))
    forged_answer = http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("x")), headers=connect_headers(forged)
    )

    assert bobs_view == [(2, bobs_view[0][1])] and bobs_view[0][1]["error"]["code"] == "not_found"
    assert forged_answer.status_code == 401


def test_it_refuses_an_expired_access_token_with_401(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    account = fake_kimi.mint_account("alice", access_ttl=0)

    response = http.post(
        CHAT_PATH, content=connect_envelope(connect_chat_body("hi")), headers=connect_headers(account.access_token)
    )

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthenticated"
    assert body["details"][0]["debug"]["reason"] == "REASON_INVALID_AUTH_TOKEN"


def test_it_answers_415_and_invalid_argument_to_malformed_requests(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    headers = connect_headers(token)

    no_type = http.post(
        CHAT_PATH,
        content=connect_envelope(connect_chat_body("hi")),
        headers={"authorization": headers["authorization"]},
    )
    bare = http.post(CHAT_PATH, content=b'{"message": {}}', headers=headers)

    assert no_type.status_code == 415 and no_type.content == b""
    assert bare.status_code == 200
    assert connect_frames(bare.content) == [(2, connect_frames(bare.content)[0][1])]
    assert connect_frames(bare.content)[0][1]["error"]["code"] == "invalid_argument"


def test_it_continues_a_chat_from_the_parent_message(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    first = [f for _, f in chat(http, token, connect_chat_body("one"))]
    chat_id, assistant_id = first[0]["chat"]["id"], first[3]["message"]["id"]
    body = connect_chat_body("two", chat_id=chat_id)
    body["message"]["parent_id"] = assistant_id

    second = [f for _, f in chat(http, token, body)]
    body["message"]["parent_id"] = "no-such-message"
    unknown_parent = chat(http, token, body)
    unknown_chat = chat(http, token, connect_chat_body("x", chat_id="00000000-0000-0000-0000-000000000000"))

    assert second[0]["chat"]["id"] == chat_id
    user = next(f["message"] for f in second if f.get("mask") == "message")
    assert user["parentId"] == assistant_id
    assert [m.text for m in fake_kimi.chats[chat_id].messages if m.role == "user"] == ["one", "two"]
    assert unknown_parent[-1][1]["error"]["code"] == "invalid_argument"
    assert unknown_chat[-1][1]["error"]["code"] == "not_found"


@pytest.mark.parametrize("package", ["kimi.chat.v1", "kimi.gateway.chat.v1"])
def test_it_deletes_a_chat_then_reports_not_found(fake_kimi: FakeKimi, http: httpx.Client, package: str) -> None:
    token = fake_kimi.mint_account("alice").access_token
    chat_id = chat(http, token, connect_chat_body("hi"))[0][1]["chat"]["id"]
    auth = {"authorization": f"Bearer {token}"}

    deleted = http.post(f"/apiv2/{package}.ChatService/DeleteChat", json={"chat_id": chat_id}, headers=auth)
    after = chat(http, token, connect_chat_body("again", chat_id=chat_id))

    assert deleted.status_code == 200 and deleted.json() == {}
    assert after[-1][1]["error"]["code"] == "not_found"
    assert fake_kimi.chats[chat_id].deleted and fake_kimi.stats()["chats_deleted"] == 1


def test_it_uploads_parses_serves_and_attaches_a_file(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    auth = {"authorization": f"Bearer {token}"}
    data = "résumé".encode() * 100

    upload = http.post(
        "/apiv2-files/file/upload", files={"file": ("report.pdf", data, "application/pdf")}, headers=auth
    )
    file = upload.json()["file"]
    progress_path = "/apiv2-files/kimi.gateway.file.v1.FileService/GetFileParseProgress"
    polls = [http.post(progress_path, json={"file_ids": [file["id"]]}, headers=auth).json() for _ in range(2)]
    download = http.get(file["blob"]["signUrl"].removeprefix(fake_kimi.url))
    body = connect_chat_body("Summarise")
    body["message"]["blocks"].append({"file": {"id": file["id"], "status": "PROCESS_STATUS_SUCCESS"}})
    frames = [f for _, f in chat(http, token, body)]

    assert file["meta"]["checksum"] == hashlib.sha256(data).hexdigest() and file["meta"]["sizeBytes"] == str(len(data))
    assert [p["progresses"][0]["status"] for p in polls] == ["PROCESS_STATUS_PROCESSING", "PROCESS_STATUS_SUCCESS"]
    assert download.content == data and "report.pdf" in download.headers["content-disposition"]
    assert frames[1]["mask"] == "chat.files" and frames[1]["chat"]["files"][0]["id"] == file["id"]
    assert fake_kimi.calls[0].upload == data


def test_it_refuses_unknown_and_failed_files(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    auth = {"authorization": f"Bearer {token}"}
    failed = http.post("/apiv2-files/file/upload", files={"file": ("fail-x.txt", b"x", "text/plain")}, headers=auth)
    failed_id = failed.json()["file"]["id"]
    for file_id in (failed_id, "unknown-id"):
        body = connect_chat_body("Summarise")
        body["message"]["blocks"].append({"file": {"id": file_id}})
        assert chat(http, token, body)[-1][1]["error"]["code"] == "invalid_argument"


def test_it_refuses_agent_models_to_free_accounts_only(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    free, paid = fake_kimi.mint_account("free"), fake_kimi.mint_account("paid", paid=True)
    body = connect_chat_body("build a site", scenario="SCENARIO_OK_COMPUTER", kimi_plus_id="ok-computer")

    refused = chat(http, free.access_token, body)
    served = chat(http, paid.access_token, body)

    assert refused[-1][1]["error"]["code"] == "permission_denied" and len(refused) == 1
    assert served[-1] == (2, {})


@pytest.mark.parametrize("spelling", ["kimiplus_id", "kimiplusId", "kimi_plus_id", "kimiPlusId"])
def test_it_accepts_every_spelling_of_the_agent_field_and_records_it(
    fake_kimi: FakeKimi, http: httpx.Client, spelling: str
) -> None:
    # kimi-web-protocol.md C.3: peers disagree on the spelling; the fake reads each and says which came.
    free, paid = fake_kimi.mint_account("free"), fake_kimi.mint_account("paid", paid=True)
    body = connect_chat_body("build a site", **{spelling: "ok-computer"})

    refused = chat(http, free.access_token, body)
    served = chat(http, paid.access_token, body)

    assert refused[-1][1]["error"]["code"] == "permission_denied"
    chat_id = served[0][1]["chat"]["id"]
    assert fake_kimi.chats[chat_id].messages[0].flags["agent_field"] == spelling


@pytest.mark.parametrize(
    ("kind", "variant", "check"),
    [
        (
            "think_flags",
            None,
            lambda fs: any(f.get("block", {}).get("text", {}).get("flags") == "thinking" for f in fs),
        ),
        ("think_flags", "multistage", lambda fs: any("multiStage" in f.get("block", {}) for f in fs)),
        ("opless", None, lambda fs: any("block" in f and "op" not in f for f in fs)),
        ("blocks_only", None, lambda fs: not any("text" in f.get("block", {}) for f in fs)),
        ("split_blocks", None, lambda fs: len({f["block"]["id"] for f in fs if "text" in f.get("block", {})}) == 2),
        ("stray_thinking", None, lambda fs: any("think" in f.get("block", {}) for f in fs)),
    ],
)
def test_it_sends_the_stream_shapes_peers_report(
    fake_kimi: FakeKimi, http: httpx.Client, kind: str, variant: str | None, check: object
) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.reply("An answer in several chunks.", chunk_size=6)
    fake_kimi.fault(kind, variant=variant)
    body = connect_chat_body("hello")
    if kind != "stray_thinking":
        body["options"]["reasoning_effort"] = "REASONING_EFFORT_LOW"
    else:
        body["options"]["reasoning_effort"] = "REASONING_EFFORT_NONE"  # reasoning comes anyway
    frames = chat(http, token, body)
    assert check([f for flag, f in frames if flag == 0])  # type: ignore[operator]
    assert frames[-1] == (2, {})


def test_it_can_close_after_done_without_the_end_frame(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.fault("no_end_frame")
    frames = chat(http, token, connect_chat_body("hello"))
    assert frames[-1][0] == 0 and "done" in frames[-1][1]


def test_it_streams_thinking_and_search_with_citations(fake_kimi: FakeKimi, http: httpx.Client) -> None:
    token = fake_kimi.mint_account("alice").access_token
    fake_kimi.reply("Sunny", thinking="Check the forecast", search=[("Paris", "https://w.example/p", "21 C", "W")])
    body = connect_chat_body("Weather?", tools=[{"type": "TOOL_TYPE_SEARCH", "search": {}}])
    body["options"]["reasoning_effort"] = "REASONING_EFFORT_LOW"

    frames = [f for _, f in chat(http, token, body)]

    masks = [f.get("mask") for f in frames]
    assert (
        masks.index("block.stage") < masks.index("block.think") < masks.index("block.tool") < masks.index("block.text")
    )
    text = "".join(f["block"]["text"]["content"] for f in frames if f.get("mask", "").startswith("block.text"))
    assert text == "Sunny [^1^]"
    done = next(f for f in frames if f.get("mask") == "block.tool.contents,block.tool.status")
    assert done["block"]["tool"]["contents"][0]["searchResult"]["base"]["url"] == "https://w.example/p"
    assert "message.refs.usedSearchChunks" in masks


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("inline", " \ue3a0cite🛠web_search:0#0:~:text=21 C🛠\ue3a0cite🛠web_search:1#0:~:text=Lyon\ue3a8"),
        ("bare", " 🛠web_search:0#0🛠🛠web_search:1#0🛠"),
        ("article", "\ue3a0article🛠Paris🎨Sunny \ue3a0cite🛠web_search:0#0:~:text=21 C🛠"),
        ("cite", " \ue200cite\ue202web_search:0#0\ue201\ue200cite\ue202web_search:1#0\ue201"),
        ("caret", " [^1^][^2^]"),
    ],
)
def test_it_writes_each_citation_form_for_each_search_call(
    fake_kimi: FakeKimi, http: httpx.Client, style: str, expected: str
) -> None:
    token = fake_kimi.mint_account("alice").access_token
    searches = [[("Paris", "https://w.example/p", "21 C", "W")], [("Lyon", "https://w.example/l", "", "")]]
    if style == "article":
        searches = searches[:1]
    fake_kimi.reply("Sunny", searches=searches, citations=style, chunk_size=4)
    body = connect_chat_body("Weather?", tools=[{"type": "TOOL_TYPE_SEARCH", "search": {}}])

    frames = [f for _, f in chat(http, token, body)]

    deltas = [f["block"]["text"]["content"] for f in frames if f.get("mask", "").startswith("block.text")]
    assert "".join(deltas).removeprefix("Sunny" if style != "article" else "") == expected
    if style in ("inline", "bare", "article"):
        assert len(deltas) > 4  # markers in pieces, split across frames
    tools = [f["block"]["tool"] for f in frames if f.get("mask") == "block.tool.contents,block.tool.status"]
    refs = [[c["searchResult"]["refIndex"] for c in t["contents"]] for t in tools]
    assert refs == [[f"web_search:{n}#0"] for n in range(len(searches))]
    calls = [f["block"]["tool"]["toolCallId"] for f in frames if "block.tool.toolCallId" in f.get("mask", "")]
    assert calls == [f"web_search:{n}" for n in range(len(searches))]
