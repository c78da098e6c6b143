"""Native multi-turn (gateway/chat/native.py) through the Responses door, without previous_response_id:
a client that keeps its own history (store: false, as Codex) resends it in full and the gateway continues
the same Kimi chat with only the new turn."""

from __future__ import annotations

from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import client_for, pool_account


def test_a_three_turn_conversation_resent_in_full_continues_one_chat(e2e):
    pool_account(e2e.fake, "native")
    _, raw = make_api_key(native_multiturn=True)
    client = client_for(e2e.url, raw)
    items: list[dict] = [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "Name a colour."}]
    logs, answers = [], []
    for reply, follow_up in (("Blue.", "And another?"), ("Red.", "A third?"), ("Green.", None)):
        e2e.fake.reply(text=reply, times=1, citations=None)
        response = client.responses.with_raw_response.create(model="kimi", input=items, store=False)
        parsed = response.parse()
        logs.append(wait_for_final_log(response.headers["x-request-id"]))
        wait_for_background_tasks()
        answers.append(parsed.output_text)
        items += [item.model_dump(exclude_none=True) for item in parsed.output]  # the answer, as Codex keeps it
        if follow_up:
            items.append({"role": "user", "content": follow_up})
    assert answers == ["Blue.", "Red.", "Green."]
    assert [log.turn_path for log in logs] == ["flattened", "native", "native"]
    assert len({log.upstream_chat_id for log in logs}) == 1
    chat = e2e.fake.chats[logs[0].upstream_chat_id]
    users = [m for m in chat.messages if m.role == "user"]
    assert [u.text for u in users[1:]] == ["And another?", "A third?"]
    by_id = {m.id: m for m in chat.messages}
    assert all(by_id[u.parent_id].role == "assistant" for u in users[1:])
    assert not chat.deleted  # store: false stores no response, but native multi-turn keeps the chat
