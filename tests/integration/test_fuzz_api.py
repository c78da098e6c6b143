"""Fuzzing ``/v1/chat/completions``: generated bodies never produce a 500 or a non-JSON error.

Three shapes: arbitrary JSON values, chat-shaped bodies with wrong or odd fields (the ones that get past
the first checks), and byte garbage. Successful answers come from the fake Kimi server. Host names in
generated URLs never reach DNS: the resolver refuses every name (literal addresses are still checked).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
odd = st.one_of(scalars, json_values)
urls = st.sampled_from([
    "data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,@@", "data:,", "data:text/plain,hi",
    "http://127.0.0.1:9/x.png", "http://169.254.169.254/", "ftp://example.org/a", "file:///etc/passwd",
    "http://[::1]/", "http://nowhere.invalid/x.png", "", "no-scheme",
])  # fmt: skip
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=40) | odd}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": urls}) | odd}),
    st.fixed_dictionaries({"type": st.just("file"), "file": st.fixed_dictionaries({"file_data": urls}) | odd}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "refusal", "", "TEXT"])}),
    odd,
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "function", "", "root"]) | odd,
        "content": st.text(max_size=60) | st.lists(parts, max_size=4) | odd,
    },
    optional={"name": odd, "tool_calls": odd, "tool_call_id": odd},
)
chat_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["kimi", "kimi-thinking", "kimi-search", "kimi-k2", "", "gpt-4o"]) | odd,
        "messages": st.lists(messages, max_size=4) | odd,
    },
    optional={
        key: odd
        for key in ("stream", "max_tokens", "stop", "temperature", "n", "tools", "tool_choice", "user",
                    "stream_options", "response_format", "conversation_id", "keep_conversation", "reasoning_effort")
    },
)  # fmt: skip


@pytest.fixture
def gateway(e2e, monkeypatch):  # type: ignore[no-untyped-def]
    real = socket.getaddrinfo

    def literal_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in (None, "127.0.0.1", "::1", "localhost") or (isinstance(host, str) and host[:1].isdigit()):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in tests")

    monkeypatch.setattr(socket, "getaddrinfo", literal_only)
    pool_account(e2e.fake, "fuzz", limit=100000)
    _, key = make_api_key()
    with httpx.Client(base_url=e2e.url, headers={"Authorization": f"Bearer {key}"}, timeout=20) as client:
        yield client


def check(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = json.loads(response.content)["error"]
        assert isinstance(error["message"], str) and error["message"]


def send(client: httpx.Client, content: bytes) -> None:
    with client.stream(
        "POST", "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    ) as r:
        r.read()
        check(r)


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(body=json_values)
def test_it_answers_any_json_value_without_a_server_error(gateway, body):
    send(gateway, dumps(body))


@FUZZ
@given(body=chat_bodies)
def test_it_answers_chat_shaped_bodies_without_a_server_error(gateway, body):
    send(gateway, dumps(body))


@FUZZ
@given(
    garbage=st.binary(max_size=300) | st.text(max_size=100).map(lambda t: ("{" + t).encode("utf-8", "surrogatepass"))
)
def test_it_answers_byte_garbage_without_a_server_error(gateway, garbage):
    send(gateway, garbage)
