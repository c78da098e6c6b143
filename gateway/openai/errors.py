"""Every failure the client sees, mapped to the wire in one place.

A view or the orchestrator raises (or catches and converts) a ``GatewayError`` and answers with
``error.status``, ``error.body()`` and ``error.headers()``. The body is OpenAI's shape::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages", "code": "..."}}

Tree (status, ``type``, default ``code``)::

    GatewayError                500 server_error          internal_error
     ├── InvalidRequest         400 invalid_request_error invalid_request
     ├── AuthenticationFailed   401 authentication_error  invalid_api_key
     ├── PermissionDenied       403 permission_error      permission_denied (e.g. model_not_allowed)
     ├── NotFound               404 not_found_error       not_found
     ├── ConversationUnavailable 409 invalid_request_error conversation_unavailable
     ├── PayloadTooLarge        413 invalid_request_error payload_too_large
     ├── RateLimitExceeded      429 rate_limit_error      rate_limit_exceeded (+ Retry-After)
     ├── UpstreamUnavailable    503 api_error             upstream_unavailable (502 when passed status=502)
     └── UpstreamTimeout        504 api_error             upstream_timeout

``gateway_error_from_kimi`` converts the upstream error tree of ``gateway/kimi/base.py`` (after
failover gave up). Messages are written for people and never contain a token: upstream messages are
passed through ``redact`` before they are quoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from gateway.kimi import base as kimi

# Anything that looks like a credential is cut out of quoted upstream text (defence in depth: the
# Kimi clients should never put one in an exception message in the first place).
_SECRET_RE = re.compile(
    r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"  # JWT
    r"|(?i:bearer)\s+\S+"
    r"|sk-[\w-]{6,}"
)
_MAX_QUOTED = 300


def redact(text: str) -> str:
    """Return ``text`` without anything shaped like a token, shortened for an error message."""
    text = _SECRET_RE.sub("[redacted]", text)
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


class GatewayError(Exception):
    """A failure with its HTTP status and OpenAI error body. Subclasses only change the defaults."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (rounded up, at least 1) when a retry time is known."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, param={self.param!r})"


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ConversationUnavailable(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conversation_unavailable"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimitExceeded(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class PoolBusy(RateLimitExceeded):
    """No account free now because every one is at its concurrency cap (not spent): the same 429 for
    OpenAI clients; the Messages door answers it as Anthropic's 529 ``overloaded_error``."""


class QuotaExceeded(GatewayError):
    """A key over its budget of upstream turns per day (OpenAI's own name for a spent quota)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "api_error"
    code = "upstream_timeout"


# --------------------------------------------------------------------------------------------------
# Upstream errors -> wire


def gateway_error_from_kimi(exc: kimi.KimiError) -> GatewayError:
    """The client-facing error for an upstream failure that failover could not recover from.

    ``ContentFiltered`` maps to a 400 coded ``content_filter``; that is only right when nothing was
    streamed yet. Once the client has seen part of the answer, feed ``Done(finish_reason=
    "content_filter")`` to the ``ReplyAssembler`` instead, so the reply ends with a notice and
    ``finish_reason: "content_filter"``.
    """
    for kind, convert in _CONVERTERS:
        if isinstance(exc, kind):
            return convert(exc)
    return UpstreamUnavailable("Kimi failed to answer.", code="upstream_error", status=502)


def _auth(exc: kimi.KimiError) -> GatewayError:
    return UpstreamUnavailable(
        "Kimi rejected the credentials of every account the gateway tried; an operator must renew them.",
        code="upstream_auth_failed",
        status=502,
    )


def _rate_limited(exc: kimi.KimiError) -> GatewayError:
    return upstream_rate_limited(retry_after=exc.retry_after if isinstance(exc, kimi.RateLimited) else None)


def upstream_rate_limited(*, retry_after: float | None) -> GatewayError:
    """The 429 for accounts the upstream refused; ``retry_after`` is when the first of them is back."""
    when = f" Retry in about {max(1, math.ceil(retry_after))} s." if retry_after is not None else ""
    return RateLimitExceeded(
        f"Every Kimi account is at its usage limit.{when}", code="upstream_rate_limited", retry_after=retry_after
    )


def _overloaded(exc: kimi.KimiError) -> GatewayError:
    return UpstreamUnavailable("Kimi is overloaded; try again shortly.", code="upstream_overloaded")


def _busy(exc: kimi.KimiError) -> GatewayError:
    return UpstreamUnavailable(
        "Kimi is still answering an earlier message in this conversation; try again when it is done.",
        code="upstream_busy",
    )


def _unavailable(exc: kimi.KimiError) -> GatewayError:
    return UpstreamUnavailable("Kimi is unavailable right now.", code="upstream_unavailable", status=502)


def _protocol(exc: kimi.KimiError) -> GatewayError:
    return UpstreamUnavailable(
        "Kimi sent an answer the gateway could not read (or cut it off).", code="upstream_protocol_error", status=502
    )


def _timeout(exc: kimi.KimiError) -> GatewayError:
    what = {
        "connect_timeout": "connecting to Kimi",
        "first_byte_timeout": "waiting for Kimi to start answering",
        "idle_timeout": "waiting for Kimi to send more",
        "no_progress_timeout": "waiting for Kimi to make progress",
    }.get(exc.code, "waiting for Kimi")
    return UpstreamTimeout(f"Timed out {what}.", code=f"upstream_{exc.code}")


def _filtered(exc: kimi.KimiError) -> GatewayError:
    return InvalidRequest("Kimi's content filter refused to answer this request.", code="content_filter")


def _chat_not_found(exc: kimi.KimiError) -> GatewayError:
    return InvalidRequest(
        "This conversation no longer exists at Kimi; start a new one.",
        code="conversation_not_found",
        param="conversation_id",
    )


def _context_too_long(exc: kimi.KimiError) -> GatewayError:
    return InvalidRequest(
        "The conversation is too long for Kimi, even with the earlier history sent as an attached file; "
        "shorten it or start a new one.",
        code="context_length_exceeded",
        param="messages",
    )


def _bad_request(exc: kimi.KimiError) -> GatewayError:
    return InvalidRequest(f"Kimi refused the request: {redact(exc.message)}", code="upstream_bad_request")


def _file_rejected(exc: kimi.KimiError) -> GatewayError:
    return InvalidRequest(
        f"Kimi could not accept an attached file: {redact(exc.message)}", code="file_rejected", param="messages"
    )


# Most specific first: ChatNotFound is a BadRequest, the timeouts share UpstreamTimeout.
_CONVERTERS: tuple[tuple[type[kimi.KimiError], Callable[[kimi.KimiError], GatewayError]], ...] = (
    (kimi.AuthError, _auth),
    (kimi.RateLimited, _rate_limited),
    (kimi.Overloaded, _overloaded),
    (kimi.StreamBusy, _busy),
    (kimi.Unavailable, _unavailable),
    (kimi.UpstreamTimeout, _timeout),
    (kimi.ContentFiltered, _filtered),
    (kimi.ChatNotFound, _chat_not_found),
    (kimi.ContextTooLong, _context_too_long),
    (kimi.BadRequest, _bad_request),
    (kimi.FileRejected, _file_rejected),
    (kimi.ProtocolError, _protocol),
)
