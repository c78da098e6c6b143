"""The Connect error object (doc 2.13, 2.15.5)."""

from __future__ import annotations

import base64
from typing import Any


def connect_error(code: str, message: str, reason: str | None = None, **debug: Any) -> dict[str, Any]:
    """The Connect error object (doc 2.13, 2.15.5); ``value`` stands in for the protobuf detail."""
    error: dict[str, Any] = {"code": code, "message": message}
    if reason:
        detail = {"reason": reason, "localizedMessage": {"locale": "en-US", "message": message}, **debug}
        value = base64.b64encode(reason.encode()).decode()
        error["details"] = [{"type": "common.error.v1.ErrorDetail", "value": value, "debug": detail}]
    return error
