"""Upstream drift through the API: the fake's unknown frames are counted per account and protocol and
stored once, with the request's final write, with samples that hold no token, id or text."""

from __future__ import annotations

import json

import pytest

from gateway.models import UpstreamDrift
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import setup_pool
from tests.integration.api.test_failover import two_accounts

# What the fake's unknown_kinds fault sends, counted once per turn (the same table as the clients' test).
from tests.integration.test_drift_clients import CONNECT_DRIFT, LEGACY_DRIFT

ANSWER = "Confidential answer about Zanzibar 桑给巴尔的秘密"
PROMPT = "Tell me the private plan for Kilimanjaro"
EXPECTED = {"connect": CONNECT_DRIFT, "legacy": LEGACY_DRIFT}


def _rows() -> dict[tuple[str, str], UpstreamDrift]:
    return {(row.kind, row.key): row for row in UpstreamDrift.objects.all()}


def _ask(client, *, stream: bool) -> tuple[str, str]:
    """The answer's text and the request id."""
    messages = [{"role": "user", "content": PROMPT}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model="kimi", messages=messages)
        return raw.parse().choices[0].message.content, raw.headers["x-request-id"]
    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    return text, raw.headers["x-request-id"]


def _settle(request_id: str) -> None:
    """Wait for the request's final write and the drift write after it. A streamed answer can reach the
    client ([DONE]) before the server's body ends and spawns that task, so the log row comes first."""
    wait_for_final_log(request_id)
    wait_for_background_tasks()


def _secrets(e2e, account_name: str, request_id: str) -> list[str]:
    """Everything a stored sample must never contain: tokens, ids, the question and the answer."""
    fake_account = e2e.fake.account(account_name)
    log = wait_for_final_log(request_id)
    chat = e2e.fake.chats[log.upstream_chat_id]
    words = [w for w in (ANSWER + " " + PROMPT).split() if len(w) > 3]
    ids = [log.upstream_chat_id, *(m.id for m in chat.messages)]
    return [fake_account.refresh_token, fake_account.access_token, *ids, *words, "桑给巴尔", "Deck", "FEEDBACK_NONE"]


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_it_counts_the_fakes_unknown_shapes_per_account_and_protocol(e2e, protocol, stream):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text=ANSWER, chunk_size=6, times=2)
    e2e.fake.fault("unknown_kinds", times=2)

    first, request_id = _ask(client, stream=stream)
    _settle(request_id)
    after_one = {key: row.count for key, row in _rows().items()}
    second, second_id = _ask(client, stream=stream)
    _settle(second_id)

    assert first == second == ANSWER  # unknown shapes are ignored and unmapped markers stripped, as before
    assert after_one == EXPECTED[protocol]
    rows = _rows()
    assert {key: row.count for key, row in rows.items()} == {key: 2 * n for key, n in EXPECTED[protocol].items()}
    assert {(row.account.name, row.protocol) for row in rows.values()} == {(f"{protocol}-0", protocol)}
    assert all(len(row.samples) == 2 for key, row in rows.items())  # one per request, up to three
    stored = json.dumps([row.samples for row in rows.values()], ensure_ascii=False)
    leaked = [s for s in _secrets(e2e, f"{protocol}-0", request_id) if s in stored]
    assert leaked == []


def test_it_keeps_the_shape_of_a_sample(e2e):
    client, _ = setup_pool(e2e, protocol="connect")
    e2e.fake.reply(text=ANSWER)
    e2e.fake.fault("unknown_kinds")

    _ask(client, stream=False)
    wait_for_background_tasks()

    rows = _rows()
    assert rows[("field", "op:merge")].samples == [
        {
            "op": "merge",
            "mask": "message.feedback",
            "eventOffset": "<int>",
            "message": {"id": "<str:36>", "feedback": {"rating": "<str:13>"}},
        }
    ]
    assert rows[("citation", "cite:unmapped")].samples[0]["refs"] == ["web_search:7#7"]


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_it_writes_nothing_while_streaming_and_everything_at_the_end(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text=ANSWER, chunk_size=4, delay=0.05)
    e2e.fake.fault("unknown_kinds")

    stream = client.chat.completions.create(model="kimi", messages=[{"role": "user", "content": PROMPT}], stream=True)
    seen_mid_stream = None
    for chunk in stream:
        if seen_mid_stream is None and chunk.choices and chunk.choices[0].delta.content:
            # The unknown frames came before the text and were read already: still nothing written.
            seen_mid_stream = UpstreamDrift.objects.count()
    # The client can see [DONE] before the server's body ends and spawns the final write: wait for the
    # final log row first, then for the rest of that task (the drift write follows the final write).
    wait_for_final_log(stream.response.headers["x-request-id"])
    wait_for_background_tasks()

    assert seen_mid_stream == 0
    rows = list(UpstreamDrift.objects.all())
    assert len(rows) == len(EXPECTED[protocol])
    # One write for the whole request: every key's row carries the same instant.
    assert len({(row.first_seen, row.last_seen) for row in rows}) == 1


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
def test_an_ordinary_request_writes_no_drift(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text=ANSWER, search=[("T", "https://example.org/t", "s", "site")], citations="inline")

    raw = client.chat.completions.with_raw_response.create(
        model="kimi-search", messages=[{"role": "user", "content": PROMPT}]
    )
    wait_for_final_log(raw.headers["x-request-id"])
    wait_for_background_tasks()

    assert not UpstreamDrift.objects.exists()


def test_it_counts_the_drift_of_an_attempt_that_failed_over_against_its_own_account(e2e):
    client, first, second = two_accounts(e2e, "connect")
    e2e.fake.fault("unknown_kinds", variant="error", account="first")
    e2e.fake.reply(text=ANSWER)

    raw = client.chat.completions.with_raw_response.create(model="kimi", messages=[{"role": "user", "content": "x"}])
    log = wait_for_final_log(raw.headers["x-request-id"])
    wait_for_background_tasks()

    assert raw.parse().choices[0].message.content == ANSWER and (log.account_id, log.attempts) == (second.pk, 2)
    rows = _rows()
    assert {row.account_id for row in rows.values()} == {first.pk}
    assert rows[("error", "REASON_FAKE_UNKNOWN")].count == 1
    # The markers at the end were still held back when the stream failed: never judged, never counted.
    unjudged = {("citation", "cite:unmapped"), ("citation", "bare:unmapped")}
    expected = {key: n for key, n in CONNECT_DRIFT.items() if key not in unjudged}
    assert {key: row.count for key, row in rows.items()} == {**expected, ("error", "REASON_FAKE_UNKNOWN"): 1}
