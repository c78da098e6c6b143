"""Argument values as the model wrote them -> values of the declared schema; the schema check.

In the envelope a string-typed parameter is raw text and any other type is JSON (README "The
contract"). ``coerce_text`` applies that per parameter: a string-typed value stays exactly as written
even when it looks like JSON (``"42"``, ``"[1]"``); a number, boolean, null, array or object is parsed as
JSON and then conformed to the schema (``"5"`` -> ``5`` for an integer, ``3.0`` -> ``3``, ``True`` ->
``true``), recursively into nested objects and arrays. A value that cannot be made to fit is kept as
written: the call still goes to the client, and ``SchemaChecker`` says what is wrong with it.

Only local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, as Pydantic and zod emit) is followed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import referencing.exceptions
from jsonschema import exceptions as schema_errors
from jsonschema import validators

from gateway.tools.spec import Schema

MAX_PROBLEMS = 3
_MAX_DEPTH = 32
_LITERALS: dict[str, object] = {"true": True, "false": False, "null": None, "none": None}
_FENCE_RE = re.compile(r"\A(?:```|~~~)[\w-]*\n(.*)\n(?:```|~~~)\Z", re.DOTALL)
_NOT_JSON = object()


def param_schema(schema: Schema, name: str) -> Schema | None:
    """The schema of argument ``name`` in an arguments-object schema (None: not declared)."""
    props = resolve(schema, schema).get("properties")
    sub = props.get(name) if isinstance(props, Mapping) else None
    if isinstance(sub, Mapping):
        return resolve(sub, schema)
    extra = resolve(schema, schema).get("additionalProperties")
    return resolve(extra, schema) if isinstance(extra, Mapping) else None


def arguments_from_params(params: Sequence[tuple[str, str, str | None]], schema: Schema) -> dict[str, object]:
    """``(name, raw text, type hint)`` triples -> the arguments object. The hint (the K3 form's
    ``type="..."``) is used only for a parameter the schema does not declare; a repeated name keeps the last."""
    arguments: dict[str, object] = {}
    for name, raw, hint in params:
        sub = param_schema(schema, name)
        if sub is None and hint:
            sub = {"type": hint}
        arguments[name] = coerce_text(raw, sub, schema)
    return arguments


def coerce_text(raw: str, schema: Schema | None, root: Schema) -> object:
    """One parameter's text -> its value (see the module docstring)."""
    types = schema_types(schema, root) if schema is not None else set()
    if "string" in types:
        if "null" in types and raw.strip() == "null":
            return None
        return raw
    value = _loads(raw)
    if not types:  # not declared: JSON when it is a JSON value other than a string, else the text
        return raw if value is _NOT_JSON or isinstance(value, str) else value
    if value is _NOT_JSON:
        return raw
    return conform(value, schema, root)


def conform(value: object, schema: Schema | None, root: Schema, depth: int = 0) -> object:
    """``value`` adjusted where the schema leaves no doubt; anything else unchanged."""
    if schema is None or depth > _MAX_DEPTH:
        return value
    schema = resolve(schema, root)
    types = schema_types(schema, root)
    if isinstance(value, str) and types and "string" not in types:
        parsed = _loads(value)
        return value if parsed is _NOT_JSON or isinstance(parsed, str) else conform(parsed, schema, root, depth + 1)
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)
    if isinstance(value, dict):
        return {k: conform(v, _property(schema, k, root), root, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [conform(v, items if isinstance(items, Mapping) else None, root, depth + 1) for v in value]
    return value


def schema_types(schema: Schema | None, root: Schema, depth: int = 0) -> set[str]:
    """The JSON types a schema admits (``type``, ``enum``/``const`` values, ``anyOf``/``oneOf`` branches);
    empty when it does not say."""
    if schema is None or depth > _MAX_DEPTH:
        return set()
    schema = resolve(schema, root)
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "enum" in schema and isinstance(schema["enum"], list):
        return {_json_type(v) for v in schema["enum"]}
    if "const" in schema:
        return {_json_type(schema["const"])}
    found: set[str] = set()
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key) or ():
            if isinstance(branch, Mapping):
                found |= schema_types(branch, root, depth + 1)
    return found


def resolve(schema: Schema, root: Schema) -> Schema:
    """Follow a local ``$ref`` (a few hops at most); an unresolvable one leaves the schema as it is."""
    for _ in range(8):
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        target: object = root
        for part in ref[1:].split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            target = target.get(key) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return schema
        schema = target
    return schema


class SchemaChecker:
    """Validates arguments against their tool's schema; one per request (validators are built once per
    schema and process, ``schema_validator``). A schema the library cannot use (not valid JSON Schema)
    checks nothing."""

    def __init__(self) -> None:
        self._validators: dict[str, Any] = {}

    def problems(self, *, tool: str, schema: Schema, value: object) -> tuple[str, ...]:
        """Up to ``MAX_PROBLEMS`` messages such as ``at $.days: 'x' is not of type 'integer'``."""
        if tool not in self._validators:
            self._validators[tool] = schema_validator(schema)
        validator = self._validators[tool]
        if validator is None:
            return ()
        try:
            errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        except (schema_errors.SchemaError, schema_errors.UnknownType, referencing.exceptions.Unresolvable):
            self._validators[tool] = None
            return ()
        return tuple(f"at {_path(e.absolute_path)}: {e.message[:200]}" for e in errors[:MAX_PROBLEMS])


def schema_validator(schema: Schema) -> Any:
    """The schema's validator (None: not valid JSON Schema), shared across requests: checking a schema
    against its metaschema costs about 2 ms (more than the rest of a tool call's handling), and agents
    send the same tools every turn."""
    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _new_validator(schema)
    return _shared_validator(key)


@functools.lru_cache(maxsize=512)
def _shared_validator(key: str) -> Any:
    return _new_validator(json.loads(key))


def _new_validator(schema: Schema) -> Any:
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except schema_errors.SchemaError:
        return None
    return cls(schema)


def _path(path: Sequence[object]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _property(schema: Schema, key: str, root: Schema) -> Schema | None:
    props = schema.get("properties")
    sub = props.get(key) if isinstance(props, Mapping) else None
    if sub is None:
        sub = schema.get("additionalProperties")
    return sub if isinstance(sub, Mapping) else None


def _loads(raw: str) -> object:
    """JSON, tolerating what models write around it: whitespace, a code fence, Python's True/None."""
    text = raw.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced[1].strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    return _LITERALS.get(text.lower(), _NOT_JSON)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
