"""Argument values -> the declared schema, and the schema check (gateway/tools/coerce.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.tools.coerce import SchemaChecker, arguments_from_params, coerce_text, conform

ROOT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "s": {"type": "string"},
        "n": {"type": "number"},
        "i": {"type": "integer"},
        "b": {"type": "boolean"},
        "maybe": {"type": ["string", "null"]},
        "color": {"enum": ["red", "green"]},
        "level": {"enum": [1, 2, 3]},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "choice": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
    "$defs": {"item": {"type": "object", "properties": {"qty": {"type": "integer"}, "name": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("s", '{"a": 1}', '{"a": 1}'),  # a string that looks like JSON stays a string
        ("s", "42", "42"),
        ("s", "  spaced  ", "  spaced  "),
        ("n", "3.5", 3.5),
        ("n", " 1e3 ", 1000.0),
        ("i", "7", 7),
        ("i", "7.0", 7),
        ("i", '"7"', 7),
        ("i", "seven", "seven"),  # kept as written: the schema check flags it
        ("b", "true", True),
        ("b", "False", False),
        ("maybe", "null", None),
        ("maybe", "nothing", "nothing"),
        ("color", "red", "red"),
        ("level", "2", 2),
        ("items", '[{"qty": "2", "name": "7"}]', [{"qty": 2, "name": "7"}]),
        ("items", '```json\n[{"qty": 1}]\n```', [{"qty": 1}]),
        ("choice", "null", None),
        ("choice", "5", 5),
        ("undeclared", "12", 12),
        ("undeclared", "hello", "hello"),
        ("undeclared", '"quoted"', '"quoted"'),
    ],
)
def test_coerce_text(name: str, raw: str, value: object) -> None:
    assert arguments_from_params([(name, raw, None)], ROOT) == {name: value}


def test_a_type_hint_applies_only_where_the_schema_is_silent() -> None:
    assert arguments_from_params([("x", "1", "string"), ("i", "2", "string")], ROOT) == {"x": "1", "i": 2}


def test_conform_leaves_what_the_schema_does_not_decide() -> None:
    assert conform({"n": "abc", "extra": "5"}, ROOT, ROOT) == {"n": "abc", "extra": "5"}
    assert coerce_text("[1, 2]", None, ROOT) == [1, 2]


def test_schema_problems_name_the_path() -> None:
    checker = SchemaChecker()
    problems = checker.problems(tool="t", schema=ROOT, value={"items": [{"qty": "x"}], "i": 1.5})
    assert problems == ("at $.i: 1.5 is not of type 'integer'", "at $.items[0].qty: 'x' is not of type 'integer'")
    assert checker.problems(tool="t", schema=ROOT, value={"i": 1}) == ()


def test_a_schema_the_library_cannot_use_checks_nothing() -> None:
    assert SchemaChecker().problems(tool="t", schema={"type": "date"}, value={"a": 1}) == ()
    assert SchemaChecker().problems(tool="u", schema={"$ref": "#/nowhere"}, value=1) == ()
