"""A ``GatewayError`` in Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``.

Statuses and types, as Anthropic's API and its SDKs know them::

    400 invalid_request_error   401 authentication_error   403 permission_error   404 not_found_error
    413 request_too_large       429 rate_limit_error (+ retry-after)              500 api_error
    502 / 503 / 504 api_error   529 overloaded_error

529 is for "try again soon, nothing is wrong with your request": Kimi said it is overloaded, or every
account is only busy (at its concurrency cap) and the wait for one ran out. Accounts at their usage
limit stay a 429 ``rate_limit_error`` with ``retry-after``; so is a key over its own budget.

A conversation too long for Kimi (``context_length_exceeded``) says so in Anthropic's own words, ``prompt
is too long: N tokens > M maximum``: Claude Code parses that message and compacts the conversation
instead of retrying it. N is the gateway's estimate of the prompt (``prompt_tokens``); Kimi does not say
its limit, so M is given as three quarters of N (enough for a compaction to aim below).
"""

from __future__ import annotations

from gateway.openai.errors import GatewayError, PoolBusy

OVERLOADED_STATUS = 529
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    OVERLOADED_STATUS: "overloaded_error",
}


def anthropic_status(error: GatewayError) -> int:
    """Anthropic's status: 529 when Kimi is overloaded or every account is only busy (PoolBusy)."""
    if error.code == "upstream_overloaded" or isinstance(error, PoolBusy):
        return OVERLOADED_STATUS
    return error.status


def anthropic_error_type(error: GatewayError) -> str:
    return _TYPES.get(anthropic_status(error), "api_error")


def anthropic_error_body(
    error: GatewayError, *, request_id: str | None = None, prompt_tokens: int = 0
) -> dict[str, object]:
    message = error.message
    if error.code == "context_length_exceeded" and prompt_tokens:
        message = f"prompt is too long: {prompt_tokens} tokens > {prompt_tokens * 3 // 4} maximum. {message}"
    body: dict[str, object] = {"type": "error", "error": {"type": anthropic_error_type(error), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body
