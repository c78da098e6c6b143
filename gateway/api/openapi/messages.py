"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` (Anthropic Messages).

Written from issue 16's text while the door was built beside it, then aligned with
gateway/anthropic/request.py and tools.py where they differ (tool names, tool_choice, the ignored
fields); the content blocks (gateway/anthropic/content.py) are not yet checked against it field by field,
so tests/integration/api/test_openapi_conformance.py leaves these paths out until they are.
"""

from __future__ import annotations

from gateway.api.openapi.common import (
    ANTHROPIC_ERROR,
    BOOLEAN,
    INTEGER,
    OBJECT,
    STRING,
    Schema,
    errors,
    json_body,
    json_or_stream,
    nullable,
)

_SOURCE: Schema = {
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "media_type", "data"],
            "properties": {"type": {"const": "base64"}, "media_type": STRING, "data": STRING},
        },
        {"type": "object", "required": ["type", "url"], "properties": {"type": {"const": "url"}, "url": STRING}},
        {"type": "object", "required": ["type", "data"], "properties": {"type": {"const": "text"}, "data": STRING}},
    ]
}

_TEXT_BLOCK: Schema = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": STRING, "cache_control": nullable(OBJECT)},
}

_BLOCKS: list[Schema] = [
    _TEXT_BLOCK,
    {"type": "object", "required": ["type", "source"], "properties": {"type": {"const": "image"}, "source": _SOURCE}},
    {
        "type": "object",
        "required": ["type", "source"],
        "properties": {"type": {"const": "document"}, "source": _SOURCE},
    },
    {
        "type": "object",
        "required": ["type", "id", "name", "input"],
        "properties": {"type": {"const": "tool_use"}, "id": STRING, "name": STRING, "input": OBJECT},
    },
    {
        "type": "object",
        "required": ["type", "tool_use_id"],
        "properties": {
            "type": {"const": "tool_result"},
            "tool_use_id": STRING,
            "content": nullable({"anyOf": [STRING, {"type": "array", "items": OBJECT}]}),
            "is_error": nullable(BOOLEAN),
        },
    },
    {
        "type": "object",
        "required": ["type", "thinking"],
        "properties": {"type": {"const": "thinking"}, "thinking": STRING, "signature": nullable(STRING)},
    },
    {
        "type": "object",
        "required": ["type", "data"],
        "properties": {"type": {"const": "redacted_thinking"}, "data": STRING},
    },
]

_MESSAGE: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["user", "assistant", "system"]},
        "content": {"anyOf": [STRING, {"type": "array", "items": {"anyOf": _BLOCKS}}]},
    },
}

_TOOL: Schema = {
    "anyOf": [
        {
            "type": "object",
            "required": ["name", "input_schema"],
            "properties": {
                "type": nullable({"const": "custom"}),
                "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,128}$"},
                "description": nullable(STRING),
                "input_schema": OBJECT,
            },
        },
        {
            "type": "object",
            "required": ["type", "name"],
            "description": "Anthropic's hosted web search (web_search_2025xxxx), served by Kimi's search",
            "properties": {"type": {"type": "string", "pattern": r"^web_search_"}},
        },
    ]
}

_TOOL_CHOICE: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["auto", "any", "tool", "none"]},
        "name": STRING,
        "disable_parallel_tool_use": {"description": "true: one call at a time (any other value: parallel)"},
    },
}

_THINKING: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["enabled", "adaptive", "disabled"]},
        "budget_tokens": nullable(INTEGER),
        "display": nullable(STRING),
    },
}


_CHOICE_WITHOUT_TOOLS: Schema = {"properties": {"type": {"enum": ["auto", "none"]}}}
_IGNORED = ("temperature", "top_p", "top_k", "metadata", "cache_control", "context_management", "output_config")


def _request(*, max_tokens_required: bool) -> Schema:
    return {
        "type": "object",
        "required": ["model", "messages", *(["max_tokens"] if max_tokens_required else [])],
        "description": "any model name is served by Kimi (KIMIPROXY_MODEL_ALIASES maps names); unknown fields ignored",
        # tool_choice any / tool needs tools to choose from (or the hosted web search)
        "anyOf": [
            {
                "properties": {
                    "tool_choice": {"anyOf": [{"type": "null"}, {"properties": {"type": {"enum": ["auto", "none"]}}}]}
                }
            },
            {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
        ],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "system": nullable({"anyOf": [STRING, {"type": "array", "items": _TEXT_BLOCK}]}),
            "max_tokens": {"type": "integer", "minimum": 1, "description": "1 or less: a local probe answer"},
            "stop_sequences": nullable({"type": "array", "items": STRING}),
            "stream": nullable(BOOLEAN),
            "tools": nullable({"type": "array", "items": _TOOL}),
            "tool_choice": nullable(_TOOL_CHOICE),
            "thinking": nullable(_THINKING),
            # accepted and ignored, whatever their value
            **{name: {"description": "accepted and ignored"} for name in _IGNORED},
        },
    }


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
                "requestBody": {"required": True, **json_body(_request(max_tokens_required=True))},
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
                "requestBody": {"required": True, **json_body(_request(max_tokens_required=False))},
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
