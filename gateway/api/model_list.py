"""``GET /v1/models`` and ``GET /v1/models/{id}`` (DRF views): the model names this gateway serves: our
``kimi-*`` names, then the upstream catalogue's model ids bare (``k2d6-chat``), merged across the
deployments of the pool's Connect accounts (kimi-web-protocol.md C.7; the built-in table's ids when
the pool has none)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import connect_origins
from gateway.api.auth import ApiKeyAuthentication, PassthroughAuthentication
from gateway.kimi.connect.catalogue_cache import catalogue_model_ids
from gateway.kimi.transport.http import run_upstream
from gateway.openai.errors import NotFound
from gateway.openai.model_names import advertised_models

CREATED = 1735689600  # a fixed "created" for our model list (OpenAI clients only display it)


class ModelOutputSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField(default=CREATED)
    owned_by = serializers.CharField(default="kimiproxy")


def served_models() -> list[str]:
    """The ids ``/v1/models`` lists (the catalogues are cached; a fetch happens once per TTL)."""
    return advertised_models(run_upstream(catalogue_model_ids, origins=connect_origins()))


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "kimiproxy"}


class ModelListView(APIView):
    authentication_classes = [ApiKeyAuthentication, PassthroughAuthentication]

    def get(self, request: Request) -> Response:
        data = ModelOutputSerializer([_model(m) for m in served_models()], many=True).data  # type: ignore[arg-type]
        return Response({"object": "list", "data": data})


class ModelDetailView(APIView):
    authentication_classes = [ApiKeyAuthentication, PassthroughAuthentication]

    def get(self, request: Request, model_id: str) -> Response:
        if model_id not in served_models():
            raise NotFound(f"The model {model_id!r} does not exist.", param="model", code="model_not_found")
        return Response(ModelOutputSerializer(_model(model_id)).data)
