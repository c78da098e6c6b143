"""Pieces every door's description shares: nullable fields, JSON and SSE bodies, the error bodies."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object"}


def nullable(schema: Schema) -> Schema:
    """An optional field the validation reads as absent when it is ``null`` (every door does so)."""
    return {"anyOf": [schema, {"type": "null"}]}


def json_body(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


# One Server-Sent Event, as schemathesis reads a text/event-stream body: each event against this schema.
SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "one JSON object (an event, or an error object); [DONE] last"},
        "event": STRING,
    },
}


def json_or_stream(schema: Schema, *, description: str) -> Schema:
    """A 200 that is one JSON body, or (``"stream": true``) Server-Sent Events."""
    return {
        "description": description,
        "headers": {"x-kimiproxy-model": {"description": "the model that answered", "schema": STRING}},
        "content": {
            "application/json": {"schema": schema},
            "text/event-stream": {"schema": SSE_EVENT},
        },
    }


OPENAI_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": STRING,
                "type": STRING,
                "param": nullable(STRING),
                "code": nullable(STRING),
            },
        }
    },
}

ANTHROPIC_ERROR: Schema = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"], "properties": {"type": STRING, "message": STRING}},
    },
}

_ERROR_TEXT = {
    400: "invalid request (the body names the field in error.param)",
    401: "no credential, or one the gateway does not know",
    403: "the key may not use this model",
    404: "unknown model, conversation or stored response",
    405: "method not allowed",
    409: "the conversation is busy or gone upstream",
    413: "body or file too large",
    429: "rate limited (Retry-After)",
    502: "the upstream answered badly",
    503: "no account can serve now, or shutting down",
    504: "the upstream did not answer in time",
    529: "the upstream is overloaded",
}


def errors(*codes: int, body: Schema = OPENAI_ERROR) -> dict[str, Schema]:
    return {str(code): {"description": _ERROR_TEXT[code], **json_body(body)} for code in codes}
