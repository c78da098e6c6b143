"""DRF glue: our GatewayError and DRF's own errors leave as OpenAI-shaped JSON."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from gateway.openai.errors import GatewayError

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, GatewayError):
        return Response(exc.body(), status=exc.status, headers=exc.headers())
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    message = detail if isinstance(detail, str) else str(detail)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    response.data = {
        "error": {
            "message": message,
            "type": _TYPES.get(response.status_code, "invalid_request_error"),
            "param": None,
            "code": code if isinstance(code, str) else None,
        }
    }
    return response
