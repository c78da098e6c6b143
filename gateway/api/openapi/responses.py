"""``POST /v1/responses`` and ``GET`` / ``DELETE /v1/responses/{response_id}`` (OpenAI Responses), as
gateway/responses/request.py and tools.py validate them (message parts through gateway/openai/messages.py).

Lenient where the door is: an input item of a type it has no use for (``reasoning``, ``web_search_call``,
a type it does not know, ``type: null``) is dropped, never refused; ``tool_choice`` is not read when no
tool is offered (only a named function/custom tool is refused then); the ignored fields take any value.
What JSON Schema cannot say is answered with a 400 naming its own code, as for chat completions
(gateway/api/openapi/chat.py): two tools with one name once namespaces are expanded
(``duplicate_tool_name``), more than MAX_TOOLS tools once namespaces are expanded (``too_many_tools``),
more kept input items than KIMIPROXY_MAX_MESSAGES (``too_many_messages``: dropped items do not count),
the part and file budgets, tool outputs before the last call when there is no user message
(``missing_tool_output``), a ``tool_choice`` naming no declared tool, a ``text.format`` schema the
structured-output path cannot use, undecodable ``data:`` URLs, refused downloads, nothing to answer.
"""

from __future__ import annotations

from django.conf import settings

from gateway.api.openapi.chat import NOT_BLANK, PARTS, URL
from gateway.api.openapi.common import (
    BOOLEAN,
    INTEGER,
    OBJECT,
    SSE_EVENT,
    STRING,
    Schema,
    errors,
    json_body,
    json_or_stream,
    nullable,
)
from gateway.responses.request import DROPPED_ITEMS, EFFORTS, RESPONSE_ID_RE, ROLES
from gateway.responses.tools import ACCEPTED_UNOFFERED, SEARCH_TYPES
from gateway.tools.spec import MAX_TOOLS

# What Python reads as false (``x or default``): absent, null, false, 0, "", [], {}.
_FALSY: Schema = {
    "anyOf": [{"enum": [None, False, 0, ""]}, {"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]
}
_STRING_OR_FALSY: Schema = {"anyOf": [STRING, _FALSY]}
_NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}  # tools.py _NAME_RE: no dot
_ANY: Schema = {"description": "any value"}

# -- input ---------------------------------------------------------------------------------------------

_KINDS = ["message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"]
_OWN_PARTS: list[Schema] = [
    {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": STRING},
    },
    {
        "type": "object",
        "required": ["type", "image_url"],
        "description": "file_id is refused",
        "properties": {"type": {"const": "input_image"}, "image_url": URL},
    },
    {
        "type": "object",
        "required": ["type", "file_url"],
        "properties": {"type": {"const": "input_file"}, "file_url": URL},
    },
    {
        "type": "object",
        "required": ["type", "file_data"],
        "description": "file_data: a data: URL, or bare base64 typed by filename (file_id is refused)",
        "properties": {
            "type": {"const": "input_file"},
            "file_url": {"type": "null"},
            "file_data": STRING,
            "filename": nullable(STRING),
        },
    },
]
_CONTENT: Schema = {
    "description": "a string, or parts (refusal and chat completions' image_url / file parts are read too)",
    "anyOf": [
        STRING,
        {"type": "array", "maxItems": settings.KIMIPROXY_MAX_PARTS, "items": {"anyOf": [*_OWN_PARTS, *PARTS]}},
    ],
}


def _message(roles: list[str], *, content_required: bool) -> Schema:
    return {
        "type": "object",
        "required": ["role", *(["content"] if content_required else [])],
        "properties": {
            "type": {"const": "message", "description": "may be left out"},
            "role": {"enum": roles},
            "content": _CONTENT if content_required else nullable(_CONTENT),
        },
    }


_CALL: Schema = {
    "type": "object",
    "required": ["type", "name"],
    "description": "the assistant's call; its id is call_id or, when call_id is empty, id",
    "properties": {
        "type": {"enum": ["function_call", "custom_tool_call"]},
        "name": STRING,
        "namespace": {"description": "a non-empty string is prefixed to name (NAMESPACE.NAME)"},
        "arguments": {"description": "function_call: a string (anything else is sent as its JSON)"},
        "input": {"description": "custom_tool_call: a string (anything else is sent as its JSON)"},
    },
    "anyOf": [
        {"required": ["call_id"], "properties": {"call_id": {"type": "string", "minLength": 1}}},
        {"required": ["id"], "properties": {"call_id": _FALSY, "id": STRING}},
    ],
}
_OUTPUT: Schema = {
    "type": "object",
    "required": ["type", "call_id"],
    "properties": {
        "type": {"enum": ["function_call_output", "custom_tool_call_output"]},
        "call_id": STRING,
        "output": {"description": "a string, or parts (their text is kept); anything else is sent as its JSON"},
    },
}
_DROPPED: Schema = {
    "type": "object",
    "description": f"dropped: {', '.join(DROPPED_ITEMS)} (encrypted_content ignored), other types, type null, "
    "and items with neither type nor role; item_reference is refused",
    "anyOf": [
        {"not": {"anyOf": [{"required": ["type"]}, {"required": ["role"]}]}},
        {"required": ["type"], "properties": {"type": {"not": {"enum": [*_KINDS, "item_reference"]}}}},
    ],
}
_ITEM: Schema = {
    "anyOf": [
        _message([r for r in ROLES if r != "assistant"], content_required=True),
        _message(["assistant"], content_required=False),
        _CALL,
        _OUTPUT,
        _DROPPED,
    ]
}
# Without a user message, a continuation must end with the outputs of its calls (after the last call:
# an order JSON Schema cannot say, missing_tool_output).
_TOOL_OUTPUT: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["function_call_output", "custom_tool_call_output"]}},
}
_USER_MESSAGE: Schema = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"const": "user"}, "type": {"const": "message"}},
}

# -- tools ---------------------------------------------------------------------------------------------

_FUNCTION: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "type": {"const": "function", "description": "may be left out"},
        "name": _NAME,
        "description": _STRING_OR_FALSY,
        "parameters": nullable(OBJECT),
        "strict": {"description": "true: strict"},
    },
}
_CUSTOM: Schema = {
    "type": "object",
    "required": ["type", "name"],
    "description": "freeform: one raw-text input (Codex's apply_patch); a grammar goes to the prompt",
    "properties": {
        "type": {"const": "custom"},
        "name": _NAME,
        "description": _STRING_OR_FALSY,
        "format": nullable(
            {
                "oneOf": [
                    {"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}},
                    {
                        "type": "object",
                        "required": ["type", "definition"],
                        "properties": {"type": {"const": "grammar"}, "definition": STRING, "syntax": _ANY},
                    },
                ]
            }
        ),
    },
}
_TOOL: Schema = {
    "description": "other hosted types (file_search, computer_use_preview, ...) get a 400 naming them",
    "anyOf": [
        _FUNCTION,
        _CUSTOM,
        {
            "type": "object",
            "required": ["type", "name", "tools"],
            "description": "its tools are offered as NAMESPACE.NAME",
            "properties": {
                "type": {"const": "namespace"},
                "name": _NAME,
                "tools": {"type": "array", "items": {"anyOf": [_FUNCTION, _CUSTOM]}},
            },
        },
        {
            "type": "object",
            "required": ["type"],
            "description": "Kimi's own search for the turn; external_web_access false: no search",
            "properties": {"type": {"enum": list(SEARCH_TYPES)}, "external_web_access": _ANY},
        },
        {
            "type": "object",
            "required": ["type"],
            "description": "accepted, not offered (every tool is offered up front)",
            "properties": {"type": {"enum": list(ACCEPTED_UNOFFERED)}},
        },
    ],
}
# tools that offer at least one tool to the model (a function or custom one, or a namespace of them)
_OFFERS_TOOLS: Schema = {
    "type": "array",
    "contains": {
        "type": "object",
        "anyOf": [
            {"not": {"required": ["type"]}},
            {"required": ["type"], "properties": {"type": {"enum": ["function", "custom"]}}},
            {"required": ["type", "tools"], "properties": {"type": {"const": "namespace"}, "tools": {"minItems": 1}}},
        ],
    },
}
_NAMES_A_TOOL: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["function", "custom"]}},
}
_TOOL_CHOICE: Schema = {
    "description": "read only when a tool is offered; a named tool must be a declared one",
    "anyOf": [
        {"enum": ["auto", "none", "required"]},
        {
            "type": "object",
            "required": ["type", "name"],
            "properties": {"type": {"enum": ["function", "custom"]}, "name": STRING, "namespace": _ANY},
        },
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(SEARCH_TYPES)}}},
        {
            "type": "object",
            "required": ["type", "mode", "tools"],
            "properties": {
                "type": {"const": "allowed_tools"},
                "mode": {"enum": ["auto", "required"]},
                "tools": {
                    "type": "array",
                    "description": "function / custom entries (type may be left out) name a declared tool; "
                    "others are skipped",
                    "items": {
                        "anyOf": [
                            {"not": {"type": "object"}},
                            {"required": ["type"], "properties": {"type": {"not": {"enum": ["function", "custom"]}}}},
                            {"required": ["name"], "properties": {"name": STRING}},
                        ]
                    },
                },
            },
        },
    ],
}

# -- the request ---------------------------------------------------------------------------------------

_TEXT_FORMAT: Schema = {
    "oneOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
        {
            "type": "object",
            "required": ["type", "schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "name": _NAME,
                "schema": OBJECT,
                "description": _STRING_OR_FALSY,
                "strict": _ANY,
            },
        },
    ]
}
# reasoning.effort, as request.py reads it: case-insensitive
_EFFORT_PATTERN = "^(?:" + "|".join("".join(f"[{c.upper()}{c}]" for c in e) for e in EFFORTS) + ")$"
_IGNORED = ("include", "client_metadata", "safety_identifier", "truncation", "temperature", "top_p", "service_tier")

REQUEST: Schema = {
    "type": "object",
    "required": ["input"],
    "description": "unknown fields are ignored; null is read as absent",
    "properties": {
        "model": nullable(
            {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK, "default": "kimi"}
        ),
        "input": {
            "description": "a string (one user message) or items; items need a user message, unless they "
            "continue previous_response_id with a tool offered and end with the outputs of the calls",
            "anyOf": [STRING, {"type": "array", "items": _ITEM}],
        },
        "instructions": nullable(STRING),
        "tools": nullable(
            {"type": "array", "items": _TOOL, "description": f"at most {MAX_TOOLS}, names unique (namespaces expanded)"}
        ),
        "tool_choice": _ANY,  # see the allOf below: its shape depends on tools
        "parallel_tool_calls": nullable(BOOLEAN),
        "max_output_tokens": nullable(
            {"type": "integer", "minimum": 0, "description": "cuts the answer (incomplete); <= 1: a local probe answer"}
        ),
        "reasoning": nullable(
            {
                "type": "object",
                "properties": {
                    "effort": nullable(
                        {"type": "string", "pattern": _EFFORT_PATTERN, "description": ", ".join(EFFORTS)}
                    ),
                    "summary": {"description": "auto / concise / detailed: summary parts; else reasoning text"},
                },
            }
        ),
        "text": nullable({"type": "object", "properties": {"format": nullable(_TEXT_FORMAT), "verbosity": _ANY}}),
        "stream": nullable(BOOLEAN),
        "store": nullable({"type": "boolean", "default": True, "description": "false: nothing kept"}),
        "previous_response_id": nullable({"type": "string", "pattern": f"^{RESPONSE_ID_RE.pattern}$"}),
        "prompt_cache_key": nullable(STRING),
        "metadata": nullable(OBJECT),
        "user": nullable(STRING),
        "background": {"not": {"const": True}, "description": "true is refused (unsupported_parameter)"},
        "conversation": {"type": "null", "description": "refused (unsupported_parameter)"},
        "prompt": {"type": "null", "description": "templates are refused (unsupported_parameter)"},
        **{name: {"description": "accepted and ignored"} for name in _IGNORED},
    },
    "allOf": [
        {
            "anyOf": [
                # no tool offered: tool_choice is not read, except that it may not name a tool
                {"properties": {"tools": {"not": _OFFERS_TOOLS}, "tool_choice": {"not": _NAMES_A_TOOL}}},
                {"required": ["tools"], "properties": {"tools": _OFFERS_TOOLS, "tool_choice": nullable(_TOOL_CHOICE)}},
            ]
        },
        {
            "anyOf": [
                {"properties": {"input": {"contains": _USER_MESSAGE}}},  # (a string is one)
                {
                    "required": ["previous_response_id", "tools"],
                    "properties": {
                        "previous_response_id": STRING,
                        "tools": _OFFERS_TOOLS,
                        "input": {"contains": _TOOL_OUTPUT},
                    },
                },
            ]
        },
    ],
}

_OUTPUT_ITEM: Schema = {
    "type": "object",
    "required": ["type", "id"],
    "properties": {
        "type": {"enum": ["message", "reasoning", "function_call", "custom_tool_call", "web_search_call"]},
        "id": STRING,
    },
}
RESPONSE: Schema = {
    "type": "object",
    "required": ["id", "object", "created_at", "status", "model", "output"],
    "properties": {
        "id": {"type": "string", "pattern": "^resp_"},
        "object": {"const": "response"},
        "created_at": INTEGER,
        "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
        "model": STRING,
        "output": {"type": "array", "items": _OUTPUT_ITEM},
        "usage": nullable(
            {
                "type": "object",
                "required": ["input_tokens", "output_tokens", "total_tokens"],
                "properties": {"input_tokens": INTEGER, "output_tokens": INTEGER, "total_tokens": INTEGER},
            }
        ),
    },
}

# gateway/responses/stream.py's events, in OpenAI's order; a failure after the first byte is response.failed.
_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.annotation.added",
    "response.output_text.done",
    "response.content_part.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.custom_tool_call_input.delta",
    "response.custom_tool_call_input.done",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
]
_EVENT: Schema = {
    **SSE_EVENT,
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": _EVENTS},
        "data": {"type": "string", "description": "the event as JSON: its type (= event) and sequence_number"},
    },
}


def _created() -> Schema:
    answer = json_or_stream(
        RESPONSE, description="a response, or with stream: SSE response.created ... response.completed"
    )
    answer["content"]["text/event-stream"] = {"schema": _EVENT}
    return answer


_ID_PARAMETER: Schema = {"name": "response_id", "in": "path", "required": True, "schema": STRING}


def responses_paths() -> dict[str, Schema]:
    return {
        "/v1/responses": {
            "post": {
                "operationId": "createResponse",
                "summary": "OpenAI Responses (Codex)",
                "requestBody": {"required": True, **json_body(REQUEST)},
                "responses": {"200": _created(), **errors(400, 401, 403, 404, 409, 413, 429, 502, 503, 504)},
            }
        },
        "/v1/responses/{response_id}": {
            "parameters": [_ID_PARAMETER],
            "get": {
                "operationId": "getResponse",
                "summary": "a stored response (store: true); only its key may read it",
                "responses": {"200": {"description": "the response", **json_body(RESPONSE)}, **errors(401, 404)},
            },
            "delete": {
                "operationId": "deleteResponse",
                "summary": "delete a stored response (and its upstream chat once nothing continues it)",
                "responses": {
                    "200": {
                        "description": "deleted",
                        **json_body(
                            {
                                "type": "object",
                                "required": ["id", "object", "deleted"],
                                "properties": {
                                    "id": STRING,
                                    "object": {"const": "response.deleted"},
                                    "deleted": {"const": True},
                                },
                            }
                        ),
                    },
                    **errors(401, 404),
                },
            },
        },
    }
