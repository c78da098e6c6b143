"""Gateway errors in the codes Responses clients parse (Codex, the openai SDKs).

* No account can serve now (any other 429 but a spent budget): ``rate_limit_exceeded``, the message
  ending with OpenAI's own wording, ``Please try again in 12.5s.``, which Codex reads for its backoff.
* The caller's own budget is spent (``turns_per_day``): ``insufficient_quota``, which clients treat as
  final. ``context_length_exceeded`` keeps its code (Codex stops instead of retrying), its ``param``
  naming ``input``.
The same error object serves the JSON body before the stream and ``response.failed`` after it began.
"""

from __future__ import annotations

import copy

from gateway.openai.errors import GatewayError, RateLimitExceeded

QUOTA_CODE = "insufficient_quota"


def try_again_wording(seconds: float) -> str:
    return f"Please try again in {max(0.1, round(seconds, 1)):g}s."


def responses_error(error: GatewayError) -> GatewayError:
    """``error`` as the Responses door reports it (a new object; the original is logged as it was)."""
    if error.param == "messages":  # the pipeline's name for the history (e.g. context_length_exceeded)
        error = copy.copy(error)
        error.param = "input"
    if error.status != 429 or error.code == QUOTA_CODE:
        return error
    message = error.message.rstrip()
    if error.retry_after is not None:
        message = f"{message} {try_again_wording(error.retry_after)}"
    return RateLimitExceeded(message, param=error.param, code="rate_limit_exceeded", retry_after=error.retry_after)
