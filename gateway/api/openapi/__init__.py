"""The published OpenAPI description of every door (served at /v1/openapi.json).

It says what the gateway does, not what it would like: the request constraints its validation enforces,
the SSE content type of streamed answers, the credential each path needs (``security: []`` where none),
every status a path answers. tests/integration/api/test_openapi_conformance.py runs schemathesis
against the live app with it and fails on any difference. One module per door beside this one.
"""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from gateway.api.openapi.chat import chat_completions_path
from gateway.api.openapi.common import BOOLEAN, INTEGER, OBJECT, STRING, Schema, errors, json_body
from gateway.api.openapi.messages import messages_paths, user_block_component
from gateway.api.openapi.responses import responses_paths

_MODEL: Schema = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {"id": STRING, "object": {"const": "model"}, "created": INTEGER, "owned_by": STRING},
}
_PUBLIC: list[Schema] = []  # ``security: []``: no credential asked


def _models_paths() -> dict[str, Schema]:
    listing = {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _MODEL}},
    }
    return {
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "our kimi-* names, then the pool's catalogue ids",
                "responses": {"200": {"description": "models", **json_body(listing)}, **errors(401)},
            }
        },
        "/v1/models/{model_id}": {
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": STRING}],
            "get": {
                "operationId": "retrieveModel",
                "responses": {"200": {"description": "the model", **json_body(_MODEL)}, **errors(401, 404)},
            },
        },
    }


def _housekeeping_paths() -> dict[str, Schema]:
    status = {"type": "object", "required": ["status"], "properties": {"status": STRING, "error": STRING}}
    token_check = {
        "type": "object",
        "required": ["token"],
        "properties": {
            "token": {
                "type": "string",
                "pattern": r"^\s*[\"']*\s*[!#-&(-~][!-~]{18,}[!#-&(-~]\s*[\"']*\s*$",
                "description": "a Kimi token (printable ASCII, no inner whitespace; surrounding quotes are stripped)",
            }
        },
    }
    live = {
        "type": "object",
        "required": ["live", "checked_in_ms"],
        "properties": {"live": BOOLEAN, "checked_in_ms": INTEGER},
    }
    local = {"200": {"description": "answered locally, no body; logged with outcome local"}}
    return {
        "/token/check": {
            "post": {
                "operationId": "checkToken",
                "summary": "is a Kimi refresh token live (refreshes it once; no chat turn)",
                "security": _PUBLIC,
                "requestBody": {"required": True, **json_body(token_check)},
                "responses": {"200": {"description": "live or not", **json_body(live)}, **errors(400)},
            }
        },
        "/ping": {
            "get": {
                "operationId": "ping",
                "security": _PUBLIC,
                "responses": {"200": {"description": "pong", "content": {"text/plain": {"schema": {"const": "pong"}}}}},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "security": _PUBLIC,
                "responses": {"200": {"description": "the process is alive", **json_body(status)}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "security": _PUBLIC,
                "responses": {
                    "200": {"description": "ready", **json_body(status)},
                    "503": {"description": "shutting down, or the database is unreachable", **json_body(status)},
                },
            }
        },
        "/": {"head": {"operationId": "connectivityCheck", "security": _PUBLIC, "responses": local}},
        "/api/hello": {
            "head": {
                "operationId": "helloCheck",
                "summary": "Claude Code's connectivity check",
                "security": _PUBLIC,
                "responses": local,
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "security": _PUBLIC,
                "responses": {"200": {"description": "this description", **json_body(OBJECT)}},
            }
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Built once per process (the chat limits come from settings)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kimiproxy",
            "version": "1.0.0",
            "description": "OpenAI- and Anthropic-compatible gateway to Kimi web chat",
        },
        "components": {
            "schemas": {"UserBlock": user_block_component()},  # a tool_result's blocks are a user's blocks
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a gateway key, or Kimi tokens"},
                "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": chat_completions_path(),
            **_models_paths(),
            **messages_paths(),
            **responses_paths(),
            **_housekeeping_paths(),
        },
    }


@require_safe
def openapi_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())
