"""The ancestor's ``POST /token/check``: is a Kimi refresh token still live (refreshes it once)."""

from __future__ import annotations

import json
import time

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.services import account_for_passthrough_token
from gateway.kimi.probes import account_probe
from gateway.kimi.transport.http import run_upstream
from gateway.openai.errors import GatewayError, InvalidRequest


@csrf_exempt
@require_http_methods(["POST"])
def token_check(request: HttpRequest) -> JsonResponse:
    """The ancestor's ``POST /token/check {"token": ...}`` -> ``{"live": bool}`` (refreshes the token)."""
    try:
        body = json.loads(request.body or b"{}")
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or len(token.strip()) < 20:
            raise InvalidRequest('Send {"token": "<Kimi refresh token>"}.', param="token", code="invalid_value")
    except ValueError:
        error = InvalidRequest("The request body is not valid JSON.", code="invalid_json")
        return JsonResponse(error.body(), status=error.status)
    except GatewayError as error:
        return JsonResponse(error.body(), status=error.status)
    try:
        account = account_for_passthrough_token(token=token.strip())
    except ValidationError as exc:  # whitespace inside, characters no token has
        refused = InvalidRequest(" ".join(exc.messages), param="token", code="invalid_value")
        return JsonResponse(refused.body(), status=refused.status)
    started = time.monotonic()
    live = run_upstream(account_probe, account_id=account.pk).live  # no chat turn spent (C.10)
    return JsonResponse({"live": live, "checked_in_ms": int((time.monotonic() - started) * 1000)})
