"""Structured output (``response_format``) over a chat that has none: ask for JSON, then check it.

    fmt = parse_openai_response_format(body.get("response_format"))   # None: plain text
    prompt += json_instructions(fmt)                                    # beside the system text
    ...
    result = check_json_output(answer_text, fmt)
    result.json_text   # the JSON alone (code fences and prose around it stripped): the content
    result.error       # None, or a 502 coded invalid_json_output saying what failed

``json_object`` asks for (and accepts) one JSON object; ``json_schema`` also validates it against the
schema with the ``jsonschema`` library (the draft named by ``$schema``, else 2020-12). A schema that is
not valid JSON Schema is a 400 naming ``response_format.json_schema.schema``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from gateway.openai.errors import GatewayError, InvalidRequest, UpstreamUnavailable
from gateway.tools.coerce import SchemaChecker, schema_validator
from gateway.tools.spec import Schema

_FENCE_RE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)\n[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclasses.dataclass(frozen=True)
class ResponseFormat:
    kind: Literal["json_object", "json_schema"]
    schema: Schema | None = None
    name: str = "response"
    description: str = ""
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class JsonResult:
    json_text: str  # what the content becomes when valid
    value: object = None
    error: GatewayError | None = None


def parse_openai_response_format(raw: object) -> ResponseFormat | None:
    """``response_format`` of a chat completions body; None for absent or ``{"type": "text"}``."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("response_format must be an object.", param="response_format", code="invalid_type")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(kind="json_object")
    if kind != "json_schema":
        raise InvalidRequest(
            "response_format.type must be text, json_object or json_schema.",
            param="response_format.type",
            code="invalid_value",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise _invalid("response_format.json_schema", "must be an object with a schema")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _invalid("response_format.json_schema.schema", "must be a JSON Schema object")
    _check_schema(schema)
    name = spec.get("name", "response")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _invalid("response_format.json_schema.name", "must be 1 to 64 letters, digits, underscores or dashes")
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise _invalid("response_format.json_schema.description", "must be a string")
    return ResponseFormat(
        kind="json_schema", schema=schema, name=name, description=description, strict=spec.get("strict") is True
    )


def json_instructions(fmt: ResponseFormat) -> str:
    """The prompt text asking for JSON only."""
    lines = [
        "# Output format",
        "Answer with one JSON value and nothing else: no explanation before or after it, no code fence.",
    ]
    if fmt.kind == "json_object":
        lines.append("The value must be a JSON object.")
        return "\n".join(lines)
    lines.append(f'It must be valid against this JSON Schema (named "{fmt.name}"):')
    if fmt.description:
        lines.append(fmt.description)
    lines.append(json.dumps(fmt.schema, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines)


def extract_json(text: str) -> str:
    """The JSON in an answer: the whole answer, else the first fenced block, else the text from the
    first ``{`` or ``[`` to the last ``}`` or ``]`` (models add a sentence around it despite being asked)."""
    stripped = text.strip()
    if _parses(stripped):
        return stripped
    for m in _FENCE_RE.finditer(text):
        inner = m[2].strip()
        if _parses(inner):
            return inner
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    end = max(stripped.rfind("}"), stripped.rfind("]"))
    if starts and end > min(starts):
        candidate = stripped[min(starts) : end + 1]
        if _parses(candidate):
            return candidate
    fenced = _FENCE_RE.search(text)
    return fenced[2].strip() if fenced else stripped


def check_json_output(text: str, fmt: ResponseFormat, *, checker: SchemaChecker | None = None) -> JsonResult:
    """Extract, parse and (for a schema) validate the answer."""
    json_text = extract_json(text)
    try:
        value = json.loads(json_text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return JsonResult(json_text=json_text, error=_output_error(f"is not valid JSON: {reason}{where}"))
    if fmt.kind == "json_object" and not isinstance(value, dict):
        return JsonResult(json_text=json_text, value=value, error=_output_error("is JSON but not a JSON object"))
    if fmt.schema is not None:
        problems = (checker or SchemaChecker()).problems(
            tool=f"response_format:{fmt.name}", schema=fmt.schema, value=value
        )
        if problems:
            detail = "; ".join(problems)
            return JsonResult(
                json_text=json_text, value=value, error=_output_error(f"does not match the schema {fmt.name}: {detail}")
            )
    return JsonResult(json_text=json_text, value=value)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return bool(text)


def _check_schema(schema: Mapping[str, Any]) -> None:
    if schema_validator(schema) is not None:  # valid (and its validator kept for the answer's check)
        return
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError as exc:
        raise _invalid(
            "response_format.json_schema.schema", f"is not a valid JSON Schema: {exc.message[:200]}"
        ) from None


def _output_error(what: str) -> GatewayError:
    return UpstreamUnavailable(f"The model's answer {what}.", code="invalid_json_output", status=502)


def _invalid(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{param} {what}.", param=param, code="invalid_value")
