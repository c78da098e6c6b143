"""``GET /v1/models`` and ``GET /v1/models/{id}`` (DRF views): the model names this gateway serves."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.api.auth import ApiKeyAuthentication, PassthroughAuthentication
from gateway.openai.errors import NotFound
from gateway.openai.model_names import advertised_models

CREATED = 1735689600  # a fixed "created" for our model list (OpenAI clients only display it)


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
