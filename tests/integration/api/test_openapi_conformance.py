"""/v1/openapi.json against the live app: schemathesis generates requests from the description (valid
ones and, in its negative phase, invalid ones) and every answer must be as described: no server error,
a documented status, content type and body, auth enforced where the description asks for it, and a 4xx
for a body the description calls invalid.

A valid body may still get a 400 for a constraint JSON Schema cannot say (gateway/api/openapi/chat.py
lists them); such a 400 must carry one of those error codes, any other 400 is a mismatch. Paths of the
description the app does not serve yet (a door being built elsewhere) are left out until it does.
Loopback only: the fake Kimi answers, and generated host names never reach DNS.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests
import schemathesis
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.api.chat_completions import api_not_found
from gateway.api.openapi import openapi_document
from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account

# 400s a schema-valid request may get, as (code, the start of error.param): gateway/api/openapi/chat.py
# says why JSON Schema cannot say them.
NOT_IN_SCHEMA = (
    ("duplicate_tool_name", ""),
    ("too_many_parts", ""),
    ("too_many_files", ""),
    ("invalid_url", ""),  # a data: URL whose base64 does not decode
    ("file_url_refused", ""),  # a URL whose download fails (here: every host name)
    ("file_rejected", ""),
    ("invalid_value", "tool_choice"),  # names no declared tool
    ("invalid_value", "response_format.json_schema.schema"),
    ("invalid_value", "text.format.schema"),
    ("empty_prompt", ""),  # nothing to answer (param: messages, or input on the Responses door)
    ("not_in_schema", ""),  # an Anthropic error body that ANTHROPIC_NOT_IN_SCHEMA matched
    # Counted over the tools namespaces expand to, and over the input items the Responses door keeps
    # (dropped ones do not count): JSON Schema cannot sum either (gateway/api/openapi/responses.py).
    ("too_many_tools", ""),
    ("too_many_messages", ""),
    # A continuation without a user message must end with tool outputs: an order, not a shape.
    ("missing_tool_output", "input"),
)

# The fake answers plain text, also when the request asks for JSON or requires a tool call: the
# gateway's 502 says the model did not (a documented status, not a gateway failure).
UPSTREAM_FAILURES = {"invalid_json_output", "tool_call_missing"}
# What a valid request may get besides an answer: no credential, not found, busy, rate limited (5xx are
# the not_a_server_error check's).
ACCEPTING = {200, 401, 403, 404, 409, 429, 500, 502, 503, 504}


# Paths described before their door was aligned with them (none now: every served path is checked).
NOT_RECONCILED: set[str] = set()


def served(path: str) -> bool:
    """Whether the app routes ``path`` (templated segments filled in) to a view of its own."""
    if path in NOT_RECONCILED:
        return False
    try:
        return resolve(path.replace("{", "").replace("}", "")).func is not api_not_found
    except Resolver404:
        return False


schema = schemathesis.openapi.from_dict(openapi_document()).include(lambda ctx: served(ctx.operation.path))


@pytest.fixture
def live(e2e, monkeypatch, settings):  # type: ignore[no-untyped-def]
    # The auth probes repeat one invalid pass-through credential, more often than its 60 a minute.
    settings.KIMIPROXY_PASSTHROUGH_RPM = 0
    real = socket.getaddrinfo

    def literal_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in (None, "127.0.0.1", "::1", "localhost") or (isinstance(host, str) and host[:1].isdigit()):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in tests")

    monkeypatch.setattr(socket, "getaddrinfo", literal_only)
    pool_account(e2e.fake, "conformance", limit=100000)
    _, key = make_api_key()
    return e2e.url, key


# The same, for the Messages door, whose Anthropic error bodies carry no code: by their message.
ANTHROPIC_NOT_IN_SCHEMA = re.compile(
    r"declared twice|not among the declared tools|invalid base64|Too many (content parts|files)|nothing to answer"
    r"|The file URL was refused|could not accept an attached file"
)
ANTHROPIC_UPSTREAM_FAILURES = re.compile(r"answered without calling a tool")


def error_of(response) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(code, param) of an error body. An Anthropic one has neither: its code is the allow-list entry
    its message matches, if any."""
    body = json.loads(response.content)
    error = body["error"]
    if body.get("type") == "error":  # Anthropic's shape
        message = error.get("message") or ""
        if ANTHROPIC_UPSTREAM_FAILURES.search(message):
            return "tool_call_missing", ""
        return ("not_in_schema" if ANTHROPIC_NOT_IN_SCHEMA.search(message) else error.get("type") or ""), ""
    return error.get("code") or "", error.get("param") or ""


def check_no_server_error(case, response) -> None:  # type: ignore[no-untyped-def]
    """schemathesis's not_a_server_error, except the upstream failures the fake causes on purpose."""
    if response.status_code < 500:
        return
    code = error_of(response)[0] if response.status_code != 500 else None
    assert code in UPSTREAM_FAILURES, f"{case.method} {case.path}: {response.status_code} {response.text}"


def check_valid_body_accepted(case, response) -> None:  # type: ignore[no-untyped-def]
    """schemathesis's positive_data_acceptance, with the 400s of NOT_IN_SCHEMA allowed."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code in ACCEPTING:
        return
    assert response.status_code == 400, f"{case.method} {case.path}: a schema-valid request got {response.text}"
    code, param = error_of(response)
    assert any(code == c and param.startswith(p) for c, p in NOT_IN_SCHEMA), (
        f"{case.method} {case.path}: a schema-valid request got 400: {response.text}"
    )


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_as_described(case, live):  # type: ignore[no-untyped-def]
    url, key = live
    with requests.Session() as session:  # ours, closed: schemathesis' own is left to the garbage collector
        response = case.call_and_validate(
            base_url=url,
            session=session,
            headers={"Authorization": f"Bearer {key}"},
            excluded_checks=[positive_data_acceptance, not_a_server_error],
            timeout=20,
        )
    check_no_server_error(case, response)
    check_valid_body_accepted(case, response)
