"""Both upstream clients count what they do not understand in the session's drift (gateway/kimi/drift.py),
against the fake's ``unknown_kinds`` frames; ordinary replies of every shape count nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.kimi import session_for
from gateway.kimi.base import TurnRequest, Unavailable
from gateway.kimi.fake import FakeKimi
from tests.integration.kimi_client_helpers import aaccount_for, close_worker_connections, http, run_turn, text_of

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest

ANSWER = "Secret answer text 秘密的回答 with words"
SEARCH = [("Hidden title", "https://example.org/private-page", "a private snippet", "Site")]

CONNECT_DRIFT = {
    ("frame", "telemetry"): 1,
    ("frame", "block.agentArtifact"): 1,
    ("field", "op:merge"): 1,
    ("field", "message.feedback"): 1,
    ("citation", "cite:unmapped"): 1,
    ("citation", "bare:unmapped"): 1,
}
LEGACY_DRIFT = {
    ("frame", "rename"): 1,
    ("frame", "loading"): 1,
    ("field", "cmpl.view"): 1,
    ("field", "search_plus.msg.type=thinking_res"): 1,
    ("citation", "cite:unmapped"): 1,
    ("citation", "bare:unmapped"): 1,
}


async def _session(fake: FakeKimi, http: httpx.AsyncClient, protocol: str) -> Any:
    return session_for(await aaccount_for(fake.mint_account("alice", protocol=protocol)), http=http)


def _counts(session: Any) -> dict[tuple[str, str], int]:
    return {(item.kind, item.key): item.count for item in session.drift.items()}


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
@pytest.mark.parametrize("citations", ["caret", "cite", "inline", "bare", "article"])
async def test_it_counts_nothing_for_the_documented_shapes(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, citations: str
) -> None:
    session = await _session(fake_kimi, http, protocol)
    fake_kimi.reply(ANSWER, search=SEARCH, thinking="thoughts", citations=citations)
    fake_kimi.fault("degrade")
    fake_kimi.fault("comma_masks")

    _, error = await run_turn(session, TurnRequest(text="hi", search=True, thinking=True))

    assert error is None and not session.drift and session.drift.items() == []


@pytest.mark.parametrize(
    "fault", ["think_flags", "opless", "blocks_only", "no_end_frame", "split_blocks", "stray_thinking"]
)
async def test_it_counts_nothing_for_the_tolerated_connect_shapes(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, fault: str
) -> None:
    session = await _session(fake_kimi, http, "connect")
    fake_kimi.reply(ANSWER, thinking="thoughts")
    fake_kimi.fault(fault)

    _, error = await run_turn(session, TurnRequest(text="hi", thinking=True))

    assert error is None and _counts(session) == {}


@pytest.mark.parametrize(("protocol", "expected"), [("connect", CONNECT_DRIFT), ("legacy", LEGACY_DRIFT)])
async def test_it_counts_the_fakes_unknown_shapes_and_keeps_the_answer(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, expected: dict[tuple[str, str], int]
) -> None:
    session = await _session(fake_kimi, http, protocol)
    fake_kimi.reply(ANSWER, chunk_size=5)
    fake_kimi.fault("unknown_kinds")

    events, error = await run_turn(session, TurnRequest(text="hi"))

    assert error is None and text_of(events) == ANSWER  # ignored as before (doc 2.7.1, 1.10), markers stripped
    assert _counts(session) == expected
    samples = json.dumps([item.samples for item in session.drift.items()], ensure_ascii=False)
    assert "Secret" not in samples and "秘密" not in samples and "FEEDBACK_NONE" not in samples


async def test_it_counts_an_unknown_connect_error_reason(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    session = await _session(fake_kimi, http, "connect")
    fake_kimi.reply(ANSWER)
    fake_kimi.fault("unknown_kinds", variant="error")

    _, error = await run_turn(session, TurnRequest(text="hi"))

    assert isinstance(error, Unavailable)
    assert _counts(session)[("error", "REASON_FAKE_UNKNOWN")] == 1
    (item,) = [i for i in session.drift.items() if i.kind == "error"]
    assert item.samples[0]["code"] == "unavailable"
    assert item.samples[0]["details"][0]["debug"]["reason"] == "REASON_FAKE_UNKNOWN"
    assert item.samples[0]["message"] == "<str:21>"  # "The upstream changed."


async def test_it_counts_an_unknown_legacy_error_type(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    session = await _session(fake_kimi, http, "legacy")
    fake_kimi.reply(ANSWER)
    fake_kimi.fault("unknown_kinds", variant="error")

    await run_turn(session, TurnRequest(text="hi"))

    (item,) = [i for i in session.drift.items() if i.kind == "error"]
    assert (item.key, item.count) == ("chat.fake_unknown", 1)
    assert item.samples[0] == {"error_type": "chat.fake_unknown", "message": "<str:4>", "detail": None}


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_it_counts_the_guessed_quota_reasons_of_c13(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str
) -> None:
    # C.13: no capture shows a quota refusal; the reasons the mapping only guesses at are reported.
    session = await _session(fake_kimi, http, protocol)
    fake_kimi.fault("rate_limited")

    await run_turn(session, TurnRequest(text="hi"))

    key = "REASON_USAGE_LIMIT_EXCEEDED" if protocol == "connect" else "chat.quota_exceeded"
    assert _counts(session) == {("error", key): 1}
