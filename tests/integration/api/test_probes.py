"""Connectivity checks answered by the gateway itself: HEAD / and HEAD /api/hello (Claude Code's)."""

from __future__ import annotations

import httpx
import pytest

from gateway.choices import Outcome
from gateway.models import RequestLog


@pytest.mark.parametrize("path", ["/", "/api/hello"])
def test_a_connectivity_check_is_answered_locally_and_logged(e2e, path):
    response = httpx.head(f"{e2e.url}{path}", timeout=10)
    assert (response.status_code, response.content) == (200, b"")
    row = RequestLog.objects.get(request_id=response.headers["x-request-id"])
    assert (row.outcome, row.path, row.client_ip, row.status_code) == (Outcome.LOCAL, path, "127.0.0.1", 200)
    assert row.api_key_id is None and row.account_id is None
    assert e2e.fake.calls == []  # no upstream call: no turn spent


def test_only_head_is_a_connectivity_check(e2e):
    assert httpx.get(f"{e2e.url}/api/hello", timeout=10).status_code == 405
    assert httpx.get(f"{e2e.url}/", timeout=10).status_code == 405
    assert not RequestLog.objects.filter(outcome=Outcome.LOCAL).exists()
