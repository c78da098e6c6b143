"""The API's errors, drawn in one place: the API path prefixes, OpenAI's error body and status types,
the JSON response for a ``GatewayError``, Django's 404/500 pages and DRF's exception handler for API
paths. Nothing in the gateway answers HTML to an API client (gateway/api/middleware.py converts the rest).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from gateway.openai.errors import GatewayError

# The API's paths: JSON errors under them (middleware.py); kimiproxy/handlers.py adds the health checks.
API_PREFIXES = ("/v1/", "/token/")
# OpenAI's error ``type`` for a status the error tree does not name itself.
STATUS_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES) or "application/json" in request.headers.get("Accept", "")


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        body = error_body(f"Unknown path {request.path}", type_="invalid_request_error", code="not_found")
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        body = error_body("Internal error in the gateway", type_="server_error", code="internal_error")
        return JsonResponse(body, status=500)
    return html_server_error(request)


def error_response(error: GatewayError, *, request_id: str) -> JsonResponse:
    """A ``GatewayError`` as OpenAI-shaped JSON, with its headers (e.g. Retry-After) and the request id."""
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    response["x-request-id"] = request_id
    return response


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler: our ``GatewayError`` and DRF's own errors leave as OpenAI-shaped JSON."""
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
            "type": STATUS_TYPES.get(response.status_code, "invalid_request_error"),
            "param": None,
            "code": code if isinstance(code, str) else None,
        }
    }
    return response
