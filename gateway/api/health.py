"""Liveness and readiness: /ping (the ancestor's), /healthz (process alive), /readyz (database reachable)."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from gateway import lifecycle


@require_safe  # GET and HEAD; any other method is a 405 with Allow
def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong", content_type="text/plain")


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    if lifecycle.is_shutting_down():
        return JsonResponse({"status": "shutting_down"}, status=503)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not ready"; say which kind
        return JsonResponse({"status": "database_unavailable", "error": type(exc).__name__}, status=503)
    return JsonResponse({"status": "ok"})
