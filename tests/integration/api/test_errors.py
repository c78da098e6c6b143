"""Every refusal is OpenAI-shaped JSON with the right status and a ``param`` naming the field."""

from __future__ import annotations

import httpx
import pytest

from gateway.models import RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import pool_account

OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def api(e2e):
    pool_account(e2e.fake, "only")
    _, raw = make_api_key(allowed_models=["kimi", "kimi-search"])

    def post(body=None, *, raw_body=None, key=raw, path="/v1/chat/completions", headers=None):
        all_headers = {"Authorization": f"Bearer {key}"} if key else {}
        all_headers.update(headers or {})
        if raw_body is not None:
            return httpx.post(e2e.url + path, content=raw_body, headers=all_headers, timeout=20)
        return httpx.post(e2e.url + path, json=body, headers=all_headers, timeout=20)

    return post


def assert_openai_error(response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


CASES = [
    ("malformed json", {"raw_body": b"{not json"}, 400, None, "invalid_json"),
    ("missing messages", {"body": {"model": "kimi"}}, 400, "messages", None),
    ("empty messages", {"body": {"model": "kimi", "messages": []}}, 400, "messages", None),
    ("messages not a list", {"body": {"model": "kimi", "messages": "hi"}}, 400, "messages", None),
    (
        "bad role",
        {"body": {"model": "kimi", "messages": [{"role": "wizard", "content": "x"}]}},
        400,
        "messages[0].role",
        None,
    ),
    (
        "content wrong type",
        {"body": {"model": "kimi", "messages": [{"role": "user", "content": 5}]}},
        400,
        "messages[0].content",
        None,
    ),
    (
        "unsupported part",
        {"body": {"model": "kimi", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}},
        400,
        "messages[0].content[0].type",
        None,
    ),
    ("n > 1", {"body": {"model": "kimi", "messages": OK_MESSAGES, "n": 2}}, 400, "n", None),
    ("stream not bool", {"body": {"model": "kimi", "messages": OK_MESSAGES, "stream": "yes"}}, 400, "stream", None),
    (
        "max_tokens negative",
        {"body": {"model": "kimi", "messages": OK_MESSAGES, "max_tokens": -1}},
        400,
        "max_tokens",
        None,
    ),
    (
        "broken data url",
        {
            "body": {
                "model": "kimi",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}],
                    }
                ],
            }
        },
        400,
        "messages[0].content[0].image_url.url",
        None,
    ),
]


@pytest.mark.parametrize(("name", "request_kwargs", "status", "param", "code"), CASES, ids=[c[0] for c in CASES])
def test_it_refuses_bad_input_with_a_clear_error(api, name, request_kwargs, status, param, code):
    response = api(**request_kwargs)
    assert_openai_error(response, status, param=param, code=code)
    row = RequestLog.objects.get(request_id=response.headers["x-request-id"])
    assert (row.status_code, row.outcome) == (status, "client_error")


def test_it_refuses_a_missing_key(api):
    assert_openai_error(api({"model": "kimi", "messages": OK_MESSAGES}, key=None), 401, code="invalid_api_key")


def test_it_refuses_an_unknown_key(api):
    assert_openai_error(api({"model": "kimi", "messages": OK_MESSAGES}, key="sk-kp-nope"), 401, code="invalid_api_key")


def test_it_refuses_a_revoked_key(e2e, api):
    _, raw = make_api_key(revoked=True)
    assert_openai_error(api({"model": "kimi", "messages": OK_MESSAGES}, key=raw), 401)


def test_it_applies_the_key_model_allow_list(api):
    assert_openai_error(api({"model": "kimi-thinking", "messages": OK_MESSAGES}), 403, param="model")


def test_it_applies_the_key_rpm_limit(e2e):
    pool_account(e2e.fake, "only")
    _, raw = make_api_key(rpm=2)
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"model": "kimi", "messages": OK_MESSAGES}
    for _ in range(2):
        assert httpx.post(f"{e2e.url}/v1/chat/completions", json=body, headers=headers, timeout=20).status_code == 200
    refused = httpx.post(f"{e2e.url}/v1/chat/completions", json=body, headers=headers, timeout=20)
    assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_it_answers_413_for_a_body_over_the_limit(api, settings):
    settings.KIMIPROXY_MAX_BODY_BYTES = 1000
    big = {"model": "kimi", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_openai_error(api(big), 413)


def test_it_answers_json_404_for_unknown_api_paths(api):
    assert_openai_error(api({}, path="/v1/embeddings"), 404)


def test_it_answers_json_405_for_a_wrong_method(e2e):
    response = httpx.get(f"{e2e.url}/v1/chat/completions", timeout=20)
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_it_refuses_a_malformed_pass_through_token_with_401(e2e):
    token = "ünïcode-token-that-is-long-enough-0123".encode()
    response = httpx.post(
        f"{e2e.url}/v1/chat/completions",
        json={"model": "kimi", "messages": OK_MESSAGES},
        headers={"Authorization": b"Bearer " + token},
        timeout=20,
    )
    assert_openai_error(response, 401, code="invalid_api_key")


def test_a_pass_through_token_kimi_refuses_is_a_401_each_time(e2e):
    # The caller's own token is its API key: Kimi refusing it is the caller's to fix, not a 502.
    dead = e2e.fake.mint_account("pt-dead").refresh_token
    e2e.fake.revoke_refresh("pt-dead")
    for _ in range(2):  # first sight (refused upstream), then the account already known as invalid
        response = httpx.post(
            f"{e2e.url}/v1/chat/completions",
            json={"model": "kimi", "messages": OK_MESSAGES},
            headers={"Authorization": f"Bearer {dead}"},
            timeout=20,
        )
        assert_openai_error(response, 401, code="invalid_api_key")


@pytest.mark.parametrize("content", ["", "  \n "])
def test_nothing_to_answer_is_refused_without_an_upstream_call(api, e2e, content):
    response = api({"model": "kimi", "messages": [{"role": "user", "content": content}]})
    assert_openai_error(response, 400, param="messages", code="empty_prompt")
    assert e2e.fake.count("chat") == 0


def test_a_bug_in_the_gateway_still_answers_json_and_finishes_the_log(e2e, monkeypatch):
    from gateway.openai import sinks

    pool_account(e2e.fake, "only")
    _, raw = make_api_key()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(sinks, "ReplyAssembler", broken)
    response = httpx.post(
        f"{e2e.url}/v1/chat/completions",
        json={"model": "kimi", "messages": OK_MESSAGES},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=20,
    )
    assert_openai_error(response, 500, code="internal_error")
    log = wait_for_final_log(response.headers["x-request-id"])
    assert (log.status_code, log.outcome) == (500, "upstream_error")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages/count_tokens"])
def test_a_nul_character_in_the_request_is_logged_not_a_500(e2e, path):
    """PostgreSQL refuses NUL in text columns: the log row holds a replacement character instead."""
    body = {"model": "kimi\x00x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "user": "u\x00"}
    response = httpx.post(f"{e2e.url}{path}", json=body, headers={"Authorization": "Bearer sk-kp-unknown"})
    assert response.status_code == 401
    request_id = response.headers.get("x-request-id") or response.headers["request-id"]
    log = RequestLog.objects.get(request_id=request_id)
    assert log.model == "kimi\ufffdx" and log.status_code == 401
