"""The small API views: /v1/models (DRF), /v1/openapi.json, /token/check."""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import account_for_passthrough_token
from gateway.authentication import ApiKeyAuthentication
from gateway.callers import caller_authenticate
from gateway.kimi.http import run_upstream
from gateway.kimi.probes import account_probe
from gateway.openai.errors import GatewayError, InvalidRequest, NotFound
from gateway.openai.model_names import advertised_models
from gateway.openapi import OPENAPI_SCHEMA

CREATED = 1735689600  # a fixed "created" for our model list (OpenAI clients only display it)


class PassthroughAuthentication(BaseAuthentication):
    """Lets pass-through callers (Kimi tokens as the bearer) list models too; keys are handled first."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header or header.split(" ", 1)[-1].strip().startswith("sk-") or not settings.KIMIPROXY_PASSTHROUGH:
            return None
        try:
            caller, _ = caller_authenticate(authorization=header)
        except GatewayError as error:
            raise exceptions.AuthenticationFailed(error.message) from None
        return _Principal(), caller

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class _Principal:
    is_authenticated = True
    is_anonymous = False


class ModelOutputSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField(default=CREATED)
    owned_by = serializers.CharField(default="kimiproxy")


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "kimiproxy"}


class ModelListView(APIView):
    authentication_classes = [ApiKeyAuthentication, PassthroughAuthentication]

    def get(self, request: Request) -> Response:
        data = ModelOutputSerializer([_model(m) for m in advertised_models()], many=True).data  # type: ignore[arg-type]
        return Response({"object": "list", "data": data})


class ModelDetailView(APIView):
    authentication_classes = [ApiKeyAuthentication, PassthroughAuthentication]

    def get(self, request: Request, model_id: str) -> Response:
        if model_id not in advertised_models():
            raise NotFound(f"The model {model_id!r} does not exist.", param="model", code="model_not_found")
        return Response(ModelOutputSerializer(_model(model_id)).data)


def openapi_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(OPENAPI_SCHEMA)


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
    account = account_for_passthrough_token(token=token.strip())
    started = time.monotonic()
    live = run_upstream(account_probe, account_id=account.pk).live  # no chat turn spent (C.10)
    return JsonResponse({"live": live, "checked_in_ms": int((time.monotonic() - started) * 1000)})
