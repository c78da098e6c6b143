"""The published OpenAPI description of the API (served at /v1/openapi.json; used by the fuzz tests)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_CONTENT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["text", "image_url", "file"]},
        "text": {"type": "string"},
        "image_url": {"type": "object", "properties": {"url": {"type": "string"}}},
        "file_url": {"type": "object", "properties": {"url": {"type": "string"}}},
        "file": {"type": "object", "properties": {"file_data": {"type": "string"}, "filename": {"type": "string"}}},
    },
}

_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}]},
        "name": {"type": "string"},
    },
}

_CHAT_REQUEST = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {"type": "string", "default": "kimi"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "user": {"type": "string"},
        "conversation_id": {"type": "string"},
        "use_search": {"type": "boolean"},
        "reasoning_format": {"type": "string", "enum": ["field", "think_tags", "hidden"]},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "n": {"type": "integer"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error", **_json(_ERROR)} for code in codes}


OPENAPI_SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "kimiproxy", "version": "1.0.0", "description": "OpenAI-compatible gateway to Kimi web chat"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "operationId": "createChatCompletion",
                "requestBody": {"required": True, **_json(_CHAT_REQUEST)},
                "responses": {
                    "200": {
                        "description": "a chat.completion, or an SSE stream of chunks",
                        **_json({"type": "object"}),
                    },
                    **_errors(400, 401, 403, 404, 409, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "responses": {"200": {"description": "models", **_json({"type": "object"})}, **_errors(401)},
            }
        },
    },
}


def openapi_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(OPENAPI_SCHEMA)
