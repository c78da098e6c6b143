"""API paths answer JSON in every case: any non-JSON error under /v1/ or /token/ becomes an
OpenAI-shaped error (Django's own 405, 400 from a bad Host, and so on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from gateway.api.errors import API_PREFIXES, STATUS_TYPES, error_body


def as_json_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or not request.path.startswith(API_PREFIXES):
        return response
    if response.get("Content-Type", "").startswith("application/json") or response.streaming:
        return response
    status = response.status_code
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    message = f"{reason} ({request.method} {request.path})"
    if status == 405 and response.has_header("Allow"):
        message += f"; allowed: {response['Allow']}"
    kind = STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = reason.lower().replace(" ", "_")
    converted = JsonResponse(error_body(message, type_=kind, code=code), status=status)
    for header in ("Allow", "Retry-After", "x-request-id"):
        if response.has_header(header):
            converted[header] = response[header]
    return converted


def database_unavailable(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """The database is unreachable (down, restarting, pool exhausted): a 503 the client may retry,
    not a 500 — nothing is wrong with the request or the gateway's code."""
    if not isinstance(exception, OperationalError | InterfaceError) or not request.path.startswith(API_PREFIXES):
        return None
    body = error_body(
        "The gateway's database is unavailable right now; retry shortly.",
        type_="server_error",
        code="database_unavailable",
    )
    response = JsonResponse(body, status=503)
    response["Retry-After"] = "5"
    return response


class ApiJsonErrorsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        response: HttpResponse = self.get_response(request)
        return as_json_error(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return as_json_error(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable(request, exception)
