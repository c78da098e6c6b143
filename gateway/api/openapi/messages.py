"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` (Anthropic Messages), as the door validates
them (gateway/anthropic/request.py, content.py, tools.py).

Lenient where the door is: a content block of a type it does not know is kept (never refused), so are
``tool_use`` outside an assistant message and ``tool_result`` outside a user one; the ignored fields take
any value. Constraints JSON Schema cannot say get a 400 whose message names them (two tools with one
name, ``tool_choice`` naming no declared tool, base64 that does not decode, too many parts or files).
"""

from __future__ import annotations

from django.conf import settings

from gateway.anthropic.tools import MAX_TOOLS
from gateway.api.openapi.chat import NOT_BLANK
from gateway.api.openapi.common import (
    ANTHROPIC_ERROR,
    INTEGER,
    OBJECT,
    STRING,
    Schema,
    errors,
    json_body,
    json_or_stream,
    nullable,
)

_KNOWN = ["text", "thinking", "redacted_thinking", "image", "document", "tool_use", "tool_result"]
_ANY_BLOCK: Schema = {"type": "object", "description": "server_tool_use, web_search_tool_result, newer types"}
_STRING_OR_FALSY: Schema = {
    "anyOf": [
        STRING,
        {"enum": [None, False, 0, ""]},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ]
}


def _source(*types: str) -> Schema:
    by_type: dict[str, Schema] = {
        "base64": {"required": ["type", "media_type", "data"], "properties": {"media_type": STRING, "data": STRING}},
        "url": {
            "required": ["type", "url"],
            "properties": {
                "url": {"type": "string", "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[^\s\x1c-\x1f\x85/]|\ufeff)"}
            },
        },
        "text": {"required": ["type", "data"], "properties": {"data": STRING}},
        "content": {"required": ["type"]},
    }
    return {
        "type": "object",
        "anyOf": [
            {**by_type[t], "properties": {"type": {"const": t}, **by_type[t].get("properties", {})}} for t in types
        ],
    }


def _blocks(role: str) -> Schema:
    """The content blocks of a message of ``role``, as content.py's ``_Blocks.add`` reads them."""
    known = [
        {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": STRING}},
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["thinking", "redacted_thinking"]}}},
        {
            "type": "object",
            "required": ["type", "source"],
            "properties": {"type": {"const": "image"}, "source": _source("base64", "url")},
        },
        {
            "type": "object",
            "required": ["type", "source"],
            "properties": {"type": {"const": "document"}, "source": _source("base64", "url", "text", "content")},
        },
    ]
    strict = list(_KNOWN)
    if role == "assistant":
        known.append(
            {
                "type": "object",
                "required": ["type", "id", "name"],
                "properties": {"type": {"const": "tool_use"}, "id": STRING, "name": STRING},
            }
        )
        strict.remove("tool_result")
    elif role == "user":
        known.append(
            {
                "type": "object",
                "required": ["type", "tool_use_id"],
                "properties": {
                    "type": {"const": "tool_result"},
                    "tool_use_id": STRING,
                    "content": nullable(
                        {"anyOf": [STRING, {"type": "array", "items": {"$ref": "#/components/schemas/UserBlock"}}]}
                    ),
                },
            }
        )
        strict.remove("tool_use")
    else:
        strict = [t for t in strict if t not in ("tool_use", "tool_result")]
    other = {**_ANY_BLOCK, "not": {"required": ["type"], "properties": {"type": {"enum": strict}}}}
    return {"anyOf": [*known, other]}


def _messages() -> Schema:
    def message(role: str) -> Schema:
        return {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"const": role},
                "content": {
                    "anyOf": [
                        STRING,
                        {"type": "array", "maxItems": settings.KIMIPROXY_MAX_PARTS, "items": _blocks(role)},
                    ]
                },
            },
        }

    return {
        "type": "array",
        "maxItems": settings.KIMIPROXY_MAX_MESSAGES,
        "description": "at least one user message; a system message is system text",
        "contains": {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}},
        "items": {"anyOf": [message("user"), message("assistant"), message("system")]},
    }


_CUSTOM_TOOL: Schema = {
    "type": "object",
    "required": ["name", "input_schema"],
    "not": {"required": ["type"], "properties": {"type": {"type": "string", "pattern": "^web_search_"}}},
    "properties": {
        "type": {"enum": [None, "custom"]},
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,128}$"},
        "description": _STRING_OR_FALSY,
        "input_schema": OBJECT,
    },
}
_HOSTED_SEARCH: Schema = {
    "type": "object",
    "required": ["type"],
    "description": "Anthropic's hosted web search (web_search_2025xxxx), served by Kimi's search",
    "properties": {"type": {"type": "string", "pattern": "^web_search_"}},
}
_TOOL_CHOICE: Schema = {
    "type": "object",
    "required": ["type"],
    "description": "tool / any need a declared tool (or the hosted search); tool names a declared one",
    "properties": {
        "type": {"enum": ["auto", "any", "tool", "none"]},
        "disable_parallel_tool_use": {"description": "true: one call at a time"},
    },
    "anyOf": [
        {"properties": {"type": {"enum": ["auto", "any", "none"]}}},
        {"required": ["name"], "properties": {"name": STRING}},
    ],
}
_IGNORED = ("temperature", "top_p", "top_k", "metadata", "cache_control", "context_management", "output_config")


def _request(*, counting: bool) -> Schema:
    properties: Schema = {
        "model": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK},
        "messages": _messages(),
        "system": nullable(
            {
                "anyOf": [
                    STRING,
                    {
                        "type": "array",
                        "items": {"type": "object", "required": ["text"], "properties": {"text": STRING}},
                    },
                ]
            }
        ),
        "stop_sequences": nullable({"type": "array", "maxItems": 16, "items": STRING}),
        "tools": nullable({"type": "array", "maxItems": MAX_TOOLS, "items": {"anyOf": [_CUSTOM_TOOL, _HOSTED_SEARCH]}}),
        "tool_choice": nullable(_TOOL_CHOICE),
        "thinking": nullable(
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["enabled", "adaptive", "disabled"]}},
            }
        ),
        **{name: {"description": "accepted and ignored"} for name in _IGNORED},
    }
    if not counting:
        properties["max_tokens"] = {"type": "integer", "minimum": 1, "description": "1: a local probe answer"}
        properties["stream"] = nullable({"type": "boolean"})
    return {
        "type": "object",
        "required": ["model", "messages", *([] if counting else ["max_tokens"])],
        "description": "any model name is served by Kimi (KIMIPROXY_MODEL_ALIASES maps names); unknown fields ignored",
        "properties": properties,
        # tool_choice any / tool needs tools to choose from
        "anyOf": [
            {
                "properties": {
                    "tool_choice": {"anyOf": [{"type": "null"}, {"properties": {"type": {"enum": ["auto", "none"]}}}]}
                }
            },
            {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
        ],
    }


def user_block_component() -> Schema:
    return _blocks("user")


_MESSAGE_OUT: Schema = {
    "type": "object",
    "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
    "properties": {
        "id": {"type": "string", "pattern": "^msg_"},
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "model": STRING,
        "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "stop_reason": nullable({"enum": ["end_turn", "tool_use", "max_tokens", "stop_sequence"]}),
        "stop_sequence": nullable(STRING),
        "usage": {
            "type": "object",
            "required": ["input_tokens", "output_tokens"],
            "properties": {"input_tokens": INTEGER, "output_tokens": INTEGER},
        },
    },
}

_SECURITY: list[Schema] = [{"bearer": []}, {"anthropicKey": []}]
_ERRORS = (400, 401, 403, 404, 409, 413, 429, 502, 503, 504, 529)


def messages_paths() -> dict[str, Schema]:
    return {
        "/v1/messages": {
            "post": {
                "operationId": "createMessage",
                "summary": "Anthropic Messages (Claude Code); also with ?beta=true",
                "security": _SECURITY,
                "requestBody": {"required": True, **json_body(_request(counting=False))},
                "responses": {
                    "200": json_or_stream(
                        _MESSAGE_OUT, description="a message, or with stream: SSE message_start ... message_stop"
                    ),
                    **errors(*_ERRORS, body=ANTHROPIC_ERROR),
                },
            }
        },
        "/v1/messages/count_tokens": {
            "post": {
                "operationId": "countMessageTokens",
                "summary": "the usage estimate, answered locally (no upstream call)",
                "security": _SECURITY,
                "requestBody": {"required": True, **json_body(_request(counting=True))},
                "responses": {
                    "200": {
                        "description": "the estimate",
                        **json_body(
                            {
                                "type": "object",
                                "required": ["input_tokens"],
                                "properties": {"input_tokens": {"type": "integer", "minimum": 1}},
                            }
                        ),
                    },
                    **errors(400, 401, 413, 429, body=ANTHROPIC_ERROR),
                },
            }
        },
    }
