"""Liveness and readiness: /ping (the ancestor's), /healthz (process alive), /readyz (database reachable)."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from gateway import lifecycle


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong", content_type="text/plain")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    if lifecycle.is_shutting_down():
        return JsonResponse({"status": "shutting_down"}, status=503)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not ready"; say which kind
        return JsonResponse({"status": "database_unavailable", "error": type(exc).__name__}, status=503)
    return JsonResponse({"status": "ok"})
