"""JSON error pages: nothing in the gateway answers HTML to an API client."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/v1/", "/token/")) or "application/json" in request.headers.get("Accept", "")


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
