"""The error tree and its wire form; upstream errors mapped to what the client sees."""

from __future__ import annotations

import pytest

from gateway.kimi import base as kimi
from gateway.openai.errors import (
    AuthenticationFailed,
    ConversationUnavailable,
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimitExceeded,
    UpstreamTimeout,
    UpstreamUnavailable,
    gateway_error_from_kimi,
    redact,
)


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (GatewayError("boom"), 500, "server_error", "internal_error"),
        (InvalidRequest("bad"), 400, "invalid_request_error", "invalid_request"),
        (AuthenticationFailed("who"), 401, "authentication_error", "invalid_api_key"),
        (PermissionDenied("no", code="model_not_allowed"), 403, "permission_error", "model_not_allowed"),
        (NotFound("gone"), 404, "not_found_error", "not_found"),
        (ConversationUnavailable("busy"), 409, "invalid_request_error", "conversation_unavailable"),
        (PayloadTooLarge("big"), 413, "invalid_request_error", "payload_too_large"),
        (RateLimitExceeded("slow", retry_after=3), 429, "rate_limit_error", "rate_limit_exceeded"),
        (UpstreamUnavailable("down"), 503, "api_error", "upstream_unavailable"),
        (UpstreamUnavailable("bad gateway", status=502), 502, "api_error", "upstream_unavailable"),
        (UpstreamTimeout("slow"), 504, "api_error", "upstream_timeout"),
    ],
)
def test_it_gives_each_error_its_status_type_and_code(error: GatewayError, status: int, type_: str, code: str) -> None:
    assert error.status == status
    body = error.body()
    assert body == {"error": {"message": error.message, "type": type_, "param": None, "code": code}}


def test_it_names_the_param() -> None:
    error = InvalidRequest("n > 1 is not supported.", param="n", code="unsupported_value")
    assert error.body()["error"] == {
        "message": "n > 1 is not supported.",
        "type": "invalid_request_error",
        "param": "n",
        "code": "unsupported_value",
    }


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (0.2, "1"), (1.0, "1"), (29.01, "30"), (0, "1")])
def test_it_sends_retry_after_in_whole_seconds(retry_after: float | None, header: str | None) -> None:
    headers = RateLimitExceeded("slow", retry_after=retry_after).headers()
    assert headers.get("Retry-After") == header


def test_it_does_not_change_the_class_defaults() -> None:
    UpstreamUnavailable("x", status=502, code="other")
    assert (UpstreamUnavailable.status, UpstreamUnavailable.code) == (503, "upstream_unavailable")


@pytest.mark.parametrize(
    ("exc", "kind", "status", "code"),
    [
        (kimi.AuthError("401 from refresh"), UpstreamUnavailable, 502, "upstream_auth_failed"),
        (kimi.RateLimited("quota", retry_after=12.5), RateLimitExceeded, 429, "upstream_rate_limited"),
        (kimi.Overloaded(), UpstreamUnavailable, 503, "upstream_overloaded"),
        (kimi.StreamBusy(), UpstreamUnavailable, 503, "upstream_busy"),
        (kimi.Unavailable(status=502), UpstreamUnavailable, 502, "upstream_unavailable"),
        (kimi.ProtocolError("cut"), UpstreamUnavailable, 502, "upstream_protocol_error"),
        (kimi.ConnectTimeout(), UpstreamTimeout, 504, "upstream_connect_timeout"),
        (kimi.FirstByteTimeout(), UpstreamTimeout, 504, "upstream_first_byte_timeout"),
        (kimi.IdleTimeout(), UpstreamTimeout, 504, "upstream_idle_timeout"),
        (kimi.NoProgressTimeout(), UpstreamTimeout, 504, "upstream_no_progress_timeout"),
        (kimi.UpstreamTimeout(), UpstreamTimeout, 504, "upstream_timeout"),
        (kimi.ContentFiltered(), InvalidRequest, 400, "content_filter"),
        (kimi.ChatNotFound("no chat"), InvalidRequest, 400, "conversation_not_found"),
        (kimi.BadRequest("unknown scenario"), InvalidRequest, 400, "upstream_bad_request"),
        (kimi.FileRejected("parse failed"), InvalidRequest, 400, "file_rejected"),
        (kimi.KimiError("??"), UpstreamUnavailable, 502, "upstream_error"),
    ],
)
def test_it_maps_every_upstream_error(exc: kimi.KimiError, kind: type, status: int, code: str) -> None:
    error = gateway_error_from_kimi(exc)
    assert isinstance(error, kind)
    assert (error.status, error.code) == (status, code)
    assert error.message


def test_it_passes_on_the_upstream_retry_time() -> None:
    error = gateway_error_from_kimi(kimi.RateLimited("quota", retry_after=12.5))
    assert error.retry_after == 12.5
    assert error.headers() == {"Retry-After": "13"}
    assert "13 s" in error.message
    assert gateway_error_from_kimi(kimi.RateLimited("quota")).headers() == {}


def test_it_points_a_missing_chat_at_conversation_id() -> None:
    assert gateway_error_from_kimi(kimi.ChatNotFound()).param == "conversation_id"


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    "secret", [JWT, "Bearer abc.def-123", "bearer abcdef", "sk-0123456789abcdef"], ids=["jwt", "bearer", "lc", "key"]
)
def test_it_never_quotes_a_token(secret: str) -> None:
    error = gateway_error_from_kimi(kimi.BadRequest(f"rejected {secret} for chat"))
    assert secret not in error.message
    assert secret not in str(error.body())
    assert "[redacted]" in error.message


def test_it_shortens_long_upstream_messages() -> None:
    assert len(redact("x" * 5000)) == 300
    assert redact("plain words") == "plain words"


def test_it_keeps_the_message_out_of_repr() -> None:
    error = InvalidRequest("secret-ish text", param="model")
    assert "secret-ish" not in repr(error)
    assert "model" in repr(error)
