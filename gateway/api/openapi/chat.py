"""``POST /v1/chat/completions`` as gateway/openai/request.py, messages.py and gateway/tools/ validate it.

Every constraint JSON Schema can say is here, so a body this schema calls valid is accepted. What it
cannot say is in the descriptions and answered with a 400 naming its own code: two tools with one name
(``duplicate_tool_name``), more content parts in the whole request than KIMIPROXY_MAX_PARTS
(``too_many_parts``) or files in the last user message than KIMIPROXY_MAX_FILES (``too_many_files``),
a ``tool_choice`` naming no declared tool (``invalid_value`` on ``tool_choice``), a ``data:`` URL whose
base64 does not decode or a URL whose download fails (``invalid_url``), a JSON schema the structured-output
path cannot use (``invalid_value`` on ``response_format...``), and messages without any text or file:
nothing to answer (``empty_prompt``; the accept stage refuses it for every door).
"""

from __future__ import annotations

from django.conf import settings

from gateway.api.openapi.common import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    Schema,
    errors,
    json_body,
    json_or_stream,
    nullable,
)
from gateway.tools.spec import MAX_TOOLS

# messages.py: http(s) with a host, or a data: URL (its payload decoded only for the last user message).
URL: Schema = {
    "type": "string",
    "pattern": r"^(?:[Hh][Tt][Tt][Pp][Ss]?://(?:[^\s\x1c-\x1f\x85/]|\ufeff)|data:[^;,]*(?:;[^;,]*)*,)",
}
_URL_FIELD: Schema = {"anyOf": [URL, {"type": "object", "required": ["url"], "properties": {"url": URL}}]}
# One character Python's str.strip() keeps: ECMA's \S differs on \x1c-\x1f, \x85 and \ufeff.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]|\ufeff"
NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}
# gateway/tools/structured.py: a response format's name takes no dot (tool names do, for namespaced tools)
FORMAT_NAME: Schema = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
_NAMED: Schema = {"type": "object", "required": ["name"], "properties": {"name": STRING}}

PARTS: list[Schema] = [
    {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"enum": ["text", "input_text"]}, "text": STRING},
    },
    {
        "type": "object",
        "required": ["type", "refusal"],
        "properties": {"type": {"const": "refusal"}, "refusal": STRING},
    },
    {
        "type": "object",
        "required": ["type", "image_url"],
        "properties": {"type": {"const": "image_url"}, "image_url": _URL_FIELD},
    },
    {
        "type": "object",
        "required": ["type", "file_url"],
        "properties": {"type": {"const": "file"}, "file_url": _URL_FIELD},
    },
    {
        "type": "object",
        "required": ["type", "file"],
        "not": {"required": ["file_url"]},
        "properties": {
            "type": {"const": "file"},
            "file": {
                "type": "object",
                "required": ["file_data"],
                "description": "file_data: a data: URL, or bare base64 typed by filename (file_id is refused)",
                "properties": {"file_data": STRING, "filename": nullable(STRING)},
            },
        },
    },
]


def _content(*, max_parts: int) -> Schema:
    return {"anyOf": [STRING, {"type": "array", "maxItems": max_parts, "items": {"anyOf": PARTS}}]}


_HISTORY_CALL: Schema = {
    "type": "object",
    "required": ["id"],
    "description": 'a function call {"function": {"name", "arguments"}} or, with "type": "custom", {"custom": {...}}',
    "properties": {"id": STRING},
    "oneOf": [
        {
            "required": ["function"],
            "properties": {"type": {"not": {"const": "custom"}}, "function": _NAMED},
        },
        {"required": ["type", "custom"], "properties": {"type": {"const": "custom"}, "custom": _NAMED}},
    ],
}


def _messages(*, max_messages: int, max_parts: int) -> Schema:
    content = _content(max_parts=max_parts)
    speaker: Schema = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"enum": ["system", "developer", "user"]}, "content": content, "name": nullable(STRING)},
    }
    tool: Schema = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["tool", "function"]},
            "content": content,
            "name": nullable(STRING),
            "tool_call_id": nullable(STRING),
        },
    }
    assistant: Schema = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"const": "assistant"},
            "content": nullable(content),
            "name": nullable(STRING),
            "tool_calls": nullable({"type": "array", "items": _HISTORY_CALL}),
        },
    }
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_messages,
        "description": "at least one user message (the one the reply answers: its files are uploaded)",
        "contains": {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}},
        "items": {"oneOf": [speaker, tool, assistant]},
    }


_TOOL: Schema = {
    "description": "tool names are unique within a request",
    "oneOf": [
        {
            "type": "object",
            "required": ["function"],
            "properties": {
                "type": {"const": "function"},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": NAME,
                        "description": nullable(STRING),
                        "parameters": nullable(OBJECT),
                        "strict": nullable(BOOLEAN),
                    },
                },
            },
        },
        {
            "type": "object",
            "required": ["type", "custom"],
            "properties": {
                "type": {"const": "custom"},
                "custom": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": NAME,
                        "description": nullable(STRING),
                        "format": nullable(
                            {
                                "oneOf": [
                                    {"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}},
                                    {
                                        "type": "object",
                                        "required": ["type", "grammar"],
                                        "properties": {
                                            "type": {"const": "grammar"},
                                            "grammar": {
                                                "type": "object",
                                                "required": ["definition"],
                                                "properties": {"definition": STRING, "syntax": STRING},
                                            },
                                        },
                                    },
                                ]
                            }
                        ),
                    },
                },
            },
        },
    ],
}

_TOOL_REFERENCE: Schema = {
    "oneOf": [
        {
            "type": "object",
            "required": ["function"],
            "properties": {"type": {"const": "function"}, "function": _NAMED},
        },
        {
            "type": "object",
            "required": ["type", "custom"],
            "properties": {"type": {"const": "custom"}, "custom": _NAMED},
        },
    ]
}

_TOOL_CHOICE: Schema = {
    "description": "required, a named tool or allowed_tools need tools, and name only declared tools",
    "anyOf": [
        {"enum": ["auto", "none", "required"]},
        {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"const": "function"},
                "function": {"type": "object", "required": ["name"], "properties": {"name": STRING}},
            },
        },
        {
            "type": "object",
            "required": ["type", "custom"],
            "properties": {
                "type": {"const": "custom"},
                "custom": {"type": "object", "required": ["name"], "properties": {"name": STRING}},
            },
        },
        {
            "type": "object",
            "required": ["type", "allowed_tools"],
            "properties": {
                "type": {"const": "allowed_tools"},
                "allowed_tools": {
                    "type": "object",
                    "required": ["mode", "tools"],
                    "properties": {
                        "mode": {"enum": ["auto", "required"]},
                        "tools": {"type": "array", "items": _TOOL_REFERENCE},
                    },
                },
            },
        },
    ],
}

_RESPONSE_FORMAT: Schema = {
    "oneOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
        {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": {
                    "type": "object",
                    "required": ["schema"],
                    "properties": {
                        "name": FORMAT_NAME,
                        "schema": OBJECT,
                        "description": nullable(STRING),
                        "strict": nullable(BOOLEAN),
                    },
                },
            },
        },
    ]
}


def chat_request() -> Schema:
    return {
        "type": "object",
        "required": ["messages"],
        "description": "unknown fields are ignored; null is read as absent",
        # tool_choice other than auto / none needs tools to choose from
        "anyOf": [
            {"properties": {"tool_choice": {"enum": ["auto", "none", None]}}},
            {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
        ],
        "properties": {
            "model": nullable(
                {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK, "default": "kimi"}
            ),
            "messages": _messages(max_messages=settings.KIMIPROXY_MAX_MESSAGES, max_parts=settings.KIMIPROXY_MAX_PARTS),
            "stream": nullable(BOOLEAN),
            "stream_options": nullable({"type": "object", "properties": {"include_usage": nullable(BOOLEAN)}}),
            "max_tokens": nullable({"type": "integer", "minimum": 1}),
            "max_completion_tokens": nullable({"type": "integer", "minimum": 1}),
            "stop": nullable({"anyOf": [STRING, {"type": "array", "items": STRING, "maxItems": 4}]}),
            "user": nullable(STRING),
            "conversation_id": nullable(
                {
                    "type": "string",
                    "pattern": r"^[A-Za-z0-9_.:-]{1,100}$",
                    "description": '"new" keeps a new chat; an id from x-conversation-id continues it (404 if unknown)',
                }
            ),
            "use_search": nullable(BOOLEAN),
            "reasoning_format": nullable({"enum": ["field", "think_tags", "hidden"]}),
            "reasoning_effort": nullable({"enum": ["none", "minimal", "low", "medium", "high", "xhigh"]}),
            "tools": nullable({"type": "array", "maxItems": MAX_TOOLS, "items": _TOOL}),
            "tool_choice": nullable(_TOOL_CHOICE),
            "parallel_tool_calls": nullable(BOOLEAN),
            "response_format": nullable(_RESPONSE_FORMAT),
            "n": nullable({"type": "integer", "minimum": 1, "maximum": 1, "description": "one choice only"}),
            "logprobs": nullable({"const": False}),
            "top_logprobs": nullable({"const": 0}),
            "temperature": nullable(NUMBER),
            "top_p": nullable(NUMBER),
            "presence_penalty": nullable(NUMBER),
            "frequency_penalty": nullable(NUMBER),
            "seed": nullable(INTEGER),
            "logit_bias": nullable(OBJECT),
        },
    }


_MESSAGE_OUT: Schema = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"const": "assistant"},
        "content": nullable(STRING),
        "reasoning_content": STRING,
        "refusal": {"type": "null"},
        "tool_calls": {"type": "array", "items": OBJECT},
        "annotations": {"type": "array", "items": OBJECT},
    },
}

CHAT_COMPLETION: Schema = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": STRING,
        "object": {"const": "chat.completion"},
        "created": INTEGER,
        "model": STRING,
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": INTEGER,
                    "message": _MESSAGE_OUT,
                    "finish_reason": {"enum": ["stop", "length", "tool_calls", "content_filter"]},
                },
            },
        },
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
            "properties": {"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER},
        },
    },
}


def chat_completions_path() -> Schema:
    return {
        "post": {
            "operationId": "createChatCompletion",
            "summary": "OpenAI chat completions",
            "requestBody": {"required": True, **json_body(chat_request())},
            "responses": {
                "200": json_or_stream(
                    CHAT_COMPLETION, description="a chat.completion, or with stream: SSE chat.completion.chunk events"
                ),
                **errors(400, 401, 403, 404, 409, 413, 429, 502, 503, 504),
            },
        }
    }
