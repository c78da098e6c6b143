"""Reading a quota refusal's reset time (kimi-web-protocol.md C.13): every spelling, and garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.kimi import quota
from gateway.kimi.base import Overloaded, RateLimited
from gateway.kimi.connect.events import connect_error, exception_error
from gateway.kimi.legacy.events import legacy_error

RESET = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-02T10:00:00Z", RESET),
        ("2026-12-02T10:00:00.123456789Z", RESET + timedelta(microseconds=123456)),  # protobuf nanoseconds
        ("2026-12-02T18:00:00+08:00", RESET),
        ("2026-12-02T10:00:00", RESET),  # no offset: UTC
        ("soon", None),
        ("", None),
        (1764669600, None),
        (None, None),
    ],
)
def test_it_reads_rfc3339_reset_times(value, expected):
    assert quota.reset_time(value) == expected


def test_it_reads_each_spelling_of_a_wait():
    assert quota.when({"retryAfterSeconds": "60"}) == (None, 60.0)
    assert quota.when({"retry_after": 5}) == (None, 5.0)
    assert quota.when({"resetTime": "2026-12-02T10:00:00Z", "retry_after": 0}) == (RESET, None)
    assert quota.when({"retry_after": True}) == (None, None)


def _connect(reason, **debug):
    detail = {"reason": reason, **debug}
    return {"code": "resource_exhausted", "message": "limit", "details": [{"type": "x", "debug": detail}]}


def test_a_connect_quota_refusal_is_evidence_and_the_free_user_overload_is_not():
    refused = connect_error(_connect("REASON_USAGE_LIMIT_EXCEEDED", resetTime="2026-12-02T10:00:00Z"))
    assert isinstance(refused, RateLimited) and refused.quota and refused.reset_at == RESET
    assert isinstance(connect_error(_connect("REASON_SERVER_OVERLOADED_FOR_FREE_USER")), Overloaded)
    member = connect_error({"code": "permission_denied", "message": "members only"})
    assert isinstance(member, RateLimited) and not member.quota


def test_an_in_stream_quota_notice_is_a_refusal_and_an_overload_notice_is_not():
    notice = exception_error({"error": {"reason": "REASON_QUOTA_EXCEEDED", "retryAfterSeconds": 30}})
    assert isinstance(notice, RateLimited) and notice.quota and notice.retry_after == 30
    assert isinstance(exception_error({"error": {"reason": "REASON_COMPLETION_OVERLOADED"}}), Overloaded)


def test_a_legacy_quota_body_carries_its_reset_time():
    body = {"error_type": "chat.quota_exceeded", "message": "x", "detail": {"resetTime": "2026-12-02T10:00:00Z"}}
    refused = legacy_error(body, in_stream=True)
    assert isinstance(refused, RateLimited) and refused.quota and refused.reset_at == RESET
    plain = legacy_error({"error_type": "chat.quota_exceeded", "message": "x", "detail": ["a list"]})
    assert isinstance(plain, RateLimited) and (plain.reset_at, plain.retry_after) == (None, None)
