"""/v1/models, /token/check, /ping, /healthz, /readyz, /v1/openapi.json."""

from __future__ import annotations

import httpx
import openai
import pytest

from accounts.models import KimiAccount
from gateway.kimi.fake.connect import MODELS
from gateway.openai.model_names import ADVERTISED_KIMI_MODELS
from tests.factories import make_account, make_api_key
from tests.integration.api.helpers import client_for, pool_account


def test_it_lists_models_in_openai_shape(e2e):
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    ids = [m.id for m in client.models.list()]
    assert {"kimi", "kimi-search", "kimi-thinking", "kimi-search-thinking", "kimi-agent"} <= set(ids)
    assert client.models.retrieve("kimi-search").id == "kimi-search"


def catalogue(*ids):
    return {"availableModels": [{"id": i, "scenario": "SCENARIO_CHAT"} for i in ids], "defaultScenario": {}}


def test_it_lists_the_catalogues_of_the_pools_deployments_bare_beside_our_names(e2e):
    # kimi-web-protocol.md C.7: each deployment's catalogue, merged, each id once, in a stable order.
    catalogues = {"kimi.com": catalogue("k2d6-chat", "k3-agent"), "kimi.ai": catalogue("k4-chat", "k2d6-chat")}
    e2e.fake.configure(catalogues=catalogues)
    make_account(name="com", token=e2e.fake.mint_account("com", deployment="kimi.com").refresh_token)
    pool_account(e2e.fake, "ai")  # minted on kimi.ai
    make_account(name="off", token=e2e.fake.mint_account("off", deployment="kimi.com").refresh_token, state="disabled")
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)

    ids = [m.id for m in client.models.list()]
    assert ids == [*ADVERTISED_KIMI_MODELS, "k2d6-chat", "k3-agent", "k4-chat"]
    assert [m.id for m in client.models.list()] == ids and e2e.fake.count("models") == 2  # cached: one per deployment
    assert client.models.retrieve("k4-chat").id == "k4-chat"
    try:
        client.models.retrieve("k3-agent-swarm")  # in the built-in table, in neither catalogue
    except openai.NotFoundError as exc:
        assert exc.body["code"] == "model_not_found"
    else:
        raise AssertionError("expected a 404")

    e2e.fake.reply("from k4")
    answer = client.chat.completions.create(model="k4-chat", messages=[{"role": "user", "content": "hi"}])
    assert answer.model == "k4-chat" and answer.choices[0].message.content == "from k4"
    sent = next(c for c in e2e.fake.calls if c.kind == "chat")
    assert sent.body["options"]["model"] == "k4-chat"  # passed through bare


def test_without_connect_accounts_it_lists_the_built_in_ids_and_asks_no_deployment(e2e):
    _, raw = make_api_key()
    ids = [m.id for m in client_for(e2e.url, raw).models.list()]
    assert ids[len(ADVERTISED_KIMI_MODELS) :] == [m["id"] for m in MODELS["availableModels"]]
    assert e2e.fake.count("models") == 0


def test_it_answers_404_for_an_unknown_model_id(e2e):
    _, raw = make_api_key()
    try:
        client_for(e2e.url, raw).models.retrieve("nope-model")
    except openai.NotFoundError as exc:
        assert exc.body["code"] == "model_not_found"
    else:
        raise AssertionError("expected a 404")


def test_models_need_a_key(e2e):
    response = httpx.get(f"{e2e.url}/v1/models", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_pass_through_callers_can_list_models(e2e):
    token = e2e.fake.mint_account("pt", protocol="connect").refresh_token
    ids = [m.id for m in client_for(e2e.url, token).models.list()]
    assert "kimi" in ids
    assert not KimiAccount.objects.exists()  # listing spends nothing upstream, so nothing is stored


@pytest.mark.parametrize("bearer", ["not-a-kimi-token-but-long-enough", "sk-unknown-gateway-key-0123456789"])
def test_models_refuse_a_credential_that_is_neither_a_key_nor_a_kimi_token(e2e, bearer):
    response = httpx.get(f"{e2e.url}/v1/models", headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    assert not KimiAccount.objects.exists()


def test_token_check_says_live_or_not(e2e):
    token = e2e.fake.mint_account("checked", protocol="connect").refresh_token
    live = httpx.post(f"{e2e.url}/token/check", json={"token": token}, timeout=10)
    assert live.status_code == 200 and live.json()["live"] is True
    e2e.fake.revoke_refresh("checked")
    other = e2e.fake.mint_account("other", protocol="connect").refresh_token
    e2e.fake.revoke_refresh("other")
    dead = httpx.post(f"{e2e.url}/token/check", json={"token": other}, timeout=10)
    assert dead.status_code == 200 and dead.json()["live"] is False
    assert token not in live.text + dead.text


def test_token_check_refuses_a_missing_token(e2e):
    response = httpx.post(f"{e2e.url}/token/check", json={}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["param"] == "token"


@pytest.mark.parametrize("token", ["eyJhbGciOi JIUzUxMiJ9.e30.signature", "токен-которого-не-бывает-0123456789"])
def test_token_check_refuses_what_cannot_be_a_token_with_a_400(e2e, token):
    response = httpx.post(f"{e2e.url}/token/check", json={"token": token}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "token" and e2e.fake.calls == []


def test_ping_health_and_readiness(e2e):
    assert httpx.get(f"{e2e.url}/ping", timeout=10).text == "pong"
    assert httpx.get(f"{e2e.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{e2e.url}/readyz", timeout=10).json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/ping", "/healthz", "/readyz", "/v1/openapi.json"])
def test_health_and_description_answer_get_and_head_only(e2e, path):
    assert httpx.head(f"{e2e.url}{path}", timeout=10).status_code == 200
    refused = httpx.request("TRACE", f"{e2e.url}{path}", timeout=10)
    assert refused.status_code == 405 and "GET" in refused.headers["allow"]


def test_it_publishes_an_openapi_schema(e2e):
    schema = httpx.get(f"{e2e.url}/v1/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/models", "/v1/messages", "/v1/responses", "/api/hello"} <= set(schema["paths"])
    stream = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/json", "text/event-stream"}
    assert schema["paths"]["/v1/messages"]["post"]["security"] == [{"bearer": []}, {"anthropicKey": []}]
