"""Clients' connectivity checks, answered by the gateway itself: ``HEAD /`` and ``HEAD /api/hello``
(Claude Code's, sent at start-up and before sub-agents). No credential is asked, no upstream call is made;
each check is one request-log row with outcome ``local``, so the dashboard counts them."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from gateway.chat.accept import client_ip, new_request_id
from gateway.records.logs import request_log_local


@csrf_exempt  # "/" is served by the full stack: another method gets its 405, not a CSRF refusal
@require_http_methods(["HEAD"])
def connectivity_check(request: HttpRequest) -> HttpResponse:
    request_id = new_request_id()
    request_log_local(request_id=request_id, path=request.path, client_ip=client_ip(request))
    response = HttpResponse(status=200)
    response["x-request-id"] = request_id
    return response
