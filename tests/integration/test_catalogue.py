"""The Connect model catalogue against the fake (kimi-web-protocol.md C.7, 2.12): fetched per deployment,
cached for ``KIMIPROXY_CATALOGUE_TTL``, the stale copy when a refetch fails, the built-in table when
there is none; and the chat request's scenario, model, agent fields and effort taken from it."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from django.core.cache import cache

from gateway.kimi import session_for
from gateway.kimi.base import TurnRequest
from gateway.kimi.connect.catalogue import BUILTIN
from gateway.kimi.connect.catalogue_cache import catalogue_get
from gateway.kimi.fake import FakeKimi
from gateway.kimi.fake.connect import MODELS
from tests.integration.kimi_client_helpers import aaccount_for, close_worker_connections, http, run_turn

__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest

T0 = 1_800_000_000.0  # epoch seconds; the walk moves time by passing `now`, never by sleeping


def renamed_catalogue() -> dict[str, Any]:
    """The 2026-09 catalogue with the renames C.7 warns about: another chat scenario, a new chat model
    that is the default, and an agent model with agent fields of its own."""
    answer = copy.deepcopy(MODELS)
    answer["availableModels"][0]["scenario"] = "SCENARIO_K2D5"
    answer["availableModels"].append(
        {
            "id": "k4-chat",
            "scenario": "SCENARIO_K2D5",
            "reasoningEffortOptions": [{"effort": "REASONING_EFFORT_LOW"}, {"effort": "REASONING_EFFORT_MAX"}],
            "defaultReasoningEffort": "REASONING_EFFORT_MAX",
        }
    )
    answer["availableModels"].append(
        {
            "id": "k4-agent",
            "scenario": "SCENARIO_OK_COMPUTER",
            "kimiPlusId": "ok-computer-2",
            "agentMode": "TYPE_PRO",
            "reasoningEffortOptions": [{"effort": "REASONING_EFFORT_HIGH"}],
        }
    )
    answer["defaultScenario"] = {"scenario": "SCENARIO_K2D5", "model": "k4-chat"}
    answer["defaultAgentModel"] = "k4-agent"
    return answer


async def test_it_serves_then_keeps_the_stale_copy_then_falls_back_to_the_built_in_table(
    fake_kimi: FakeKimi, http: Any, settings: Any
) -> None:
    settings.KIMIPROXY_CATALOGUE_TTL = 300
    fake_kimi.configure(catalogues={"kimi.com": renamed_catalogue()})
    base = fake_kimi.url

    served = await catalogue_get(base_url=base, http=http, now=T0)
    cached = await catalogue_get(base_url=base, http=http, now=T0 + 299)
    assert served.source == cached.source == "upstream" and "k4-chat" in served.model_ids()
    assert served.default_model == "k4-chat" and fake_kimi.count("models") == 1  # the second came from the cache

    fake_kimi.fault("http_5xx", on="models", status=503, times=2)
    stale = await catalogue_get(base_url=base, http=http, now=T0 + 301)
    assert stale.source == "stale" and stale.models == served.models and stale.fetched_at == T0
    assert [c.status for c in fake_kimi.calls if c.kind == "models"] == [200, 503]
    # A failed fetch is not retried on every turn: the next 30 s use the stale copy without asking.
    assert (await catalogue_get(base_url=base, http=http, now=T0 + 330)).source == "stale"
    assert fake_kimi.count("models") == 2

    await cache.aclear()
    builtin = await catalogue_get(base_url=base, http=http, now=T0 + 340)
    assert builtin == BUILTIN and builtin.source == "builtin"
    assert [c.status for c in fake_kimi.calls if c.kind == "models"] == [200, 503, 503]

    recovered = await catalogue_get(base_url=base, http=http, now=T0 + 371)  # the upstream is back
    assert recovered.source == "upstream" and recovered.models == served.models
    unauthenticated = [c.headers.get("authorization") for c in fake_kimi.calls if c.kind == "models"]
    assert unauthenticated == [None] * 4  # C.7: fetched without any account's token


async def test_a_ttl_of_zero_never_fetches(fake_kimi: FakeKimi, http: Any, settings: Any) -> None:
    settings.KIMIPROXY_CATALOGUE_TTL = 0
    assert await catalogue_get(base_url=fake_kimi.url, http=http, now=T0) == BUILTIN
    assert fake_kimi.count("models") == 0


def chat_bodies(fake: FakeKimi) -> list[dict[str, Any]]:
    return [c.body for c in fake.calls if c.kind == "chat"]


@pytest.mark.django_db(transaction=True)
async def test_the_chat_request_takes_its_values_from_the_account_deployments_catalogue(
    fake_kimi: FakeKimi, http: Any
) -> None:
    fake_kimi.configure(catalogues={"kimi.ai": renamed_catalogue()})  # kimi.com keeps the 2026-09 one
    ai = session_for(await aaccount_for(fake_kimi.mint_account("ai", paid=True), origin="kimi.ai"), http=http)
    com = session_for(await aaccount_for(fake_kimi.mint_account("com", paid=True, deployment="kimi.com")), http=http)

    for request in (TurnRequest(text="hi"), TurnRequest(text="build", agent_id="kimi-agent")):
        for session in (ai, com):
            _, error = await run_turn(session, request)
            assert error is None

    plain_ai, plain_com, agent_ai, agent_com = chat_bodies(fake_kimi)
    # kimi.ai: the default model of its catalogue, with that model's scenario (C.7).
    assert (plain_ai["scenario"], plain_ai["message"]["scenario"]) == ("SCENARIO_K2D5", "SCENARIO_K2D5")
    assert plain_ai["options"]["model"] == "k4-chat" and "kimiplus_id" not in plain_ai
    assert (plain_com["scenario"], plain_com["options"]["model"]) == ("SCENARIO_CHAT", "k2d6-chat")
    # The agent scenario: the catalogue's default agent model and its agent id and mode.
    assert agent_ai["options"]["model"] == "k4-agent" and agent_ai["kimiplus_id"] == "ok-computer-2"
    assert (agent_ai["scenario"], agent_ai["options"]["agent_mode"]) == ("SCENARIO_OK_COMPUTER", "TYPE_PRO")
    assert (agent_com["options"]["model"], agent_com["kimiplus_id"]) == ("k3-agent", "ok-computer")
    assert agent_com["options"]["agent_mode"] == "TYPE_NORMAL"
    flags = [chat.messages[0].flags for chat in fake_kimi.chats.values()]
    assert [(f["scenario"], f["model"]) for f in flags] == [
        ("SCENARIO_K2D5", "k4-chat"),
        ("SCENARIO_CHAT", "k2d6-chat"),
        ("SCENARIO_OK_COMPUTER", "k4-agent"),
        ("SCENARIO_OK_COMPUTER", "k3-agent"),
    ]
    models_calls = {c.deployment for c in fake_kimi.calls if c.kind == "models"}
    assert models_calls == {"kimi.ai", "kimi.com"} and fake_kimi.count("models") == 2  # once per deployment


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({"model": "k2d6-chat", "reasoning_effort": "high"}, "REASONING_EFFORT_LOW"),  # NONE and LOW only (2.12)
        ({"model": "k2d6-chat", "reasoning_effort": "none"}, "REASONING_EFFORT_NONE"),
        ({"model": "k4-chat", "reasoning_effort": "high"}, "REASONING_EFFORT_LOW"),  # LOW, MAX: the one below
        ({"model": "k4-chat", "reasoning_effort": "none"}, "REASONING_EFFORT_LOW"),  # none below: the weakest
        ({"model": "k4-chat"}, "REASONING_EFFORT_LOW"),  # not asked to reason, and NONE is not offered
        ({"model": "k4-chat", "thinking": True}, "REASONING_EFFORT_MAX"),  # the catalogue's default effort
        ({"agent_id": "kimi-agent", "reasoning_effort": "low"}, "REASONING_EFFORT_HIGH"),  # k4-agent: HIGH only
        ({"reasoning_effort": "high"}, "REASONING_EFFORT_LOW"),  # the default model, k4-chat
    ],
)
async def test_the_effort_is_capped_to_what_the_catalogue_offers(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, fields: dict[str, Any], sent: str
) -> None:
    fake_kimi.configure(catalogues={"kimi.com": renamed_catalogue()})
    account = await aaccount_for(fake_kimi.mint_account("paid", paid=True, deployment="kimi.com"))
    _, error = await run_turn(session_for(account, http=http), TurnRequest(text="x", **fields))
    assert error is None
    assert chat_bodies(fake_kimi)[-1]["options"]["reasoning_effort"] == sent


async def test_a_cache_that_is_down_does_not_fail_the_turn(fake_kimi: FakeKimi, http: Any, settings: Any) -> None:
    # REDIS_URL pointing at nothing (a loopback port nobody listens on): every turn fetches instead.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9"}
    }
    fake_kimi.configure(catalogues={"kimi.com": renamed_catalogue()})
    first = await catalogue_get(base_url=fake_kimi.url, http=http, now=T0)
    second = await catalogue_get(base_url=fake_kimi.url, http=http, now=T0 + 1)
    assert first.source == second.source == "upstream" and "k4-chat" in first.model_ids()
    assert fake_kimi.count("models") == 2
