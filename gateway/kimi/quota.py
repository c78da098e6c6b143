"""Reading "quota exhausted until T" out of an upstream refusal (kimi-web-protocol.md C.13).

No capture shows how either stack refuses a turn for quota, so every form C.13 lists is accepted: T as
an RFC 3339 ``resetTime`` (Connect ``details[].debug``, legacy ``detail``, ``GetSubscriptionStats``) or
as seconds (``retryAfterSeconds``, legacy ``detail.retry_after``). Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

# Protobuf timestamps may carry nanoseconds; datetime takes at most microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


def reset_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (UTC when it names no offset); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def seconds(value: object) -> float | None:
    """A positive number of seconds (a number or a numeric string); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def when(fields: dict[str, Any]) -> tuple[datetime | None, float | None]:
    """(reset time, retry seconds) from one object of a refusal, in any of the spellings C.13 names."""
    reset = reset_time(fields.get("resetTime") or fields.get("reset_time"))
    wait = seconds(fields.get("retryAfterSeconds") or fields.get("retry_after") or fields.get("retryAfter"))
    return reset, wait
