"""response_format: the JSON prompt, extraction and validation (gateway/tools/structured.py)."""

from __future__ import annotations

import pytest

from gateway.openai.errors import InvalidRequest
from gateway.tools.structured import (
    ResponseFormat,
    check_json_output,
    extract_json,
    json_instructions,
    parse_openai_response_format,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def test_response_format_shapes() -> None:
    assert parse_openai_response_format(None) is None
    assert parse_openai_response_format({"type": "text"}) is None
    assert parse_openai_response_format({"type": "json_object"}) == ResponseFormat(kind="json_object")
    fmt = parse_openai_response_format(SCHEMA_FORMAT)
    assert fmt is not None and (fmt.kind, fmt.name, fmt.strict, fmt.schema) == ("json_schema", "person", True, PERSON)


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ("json", "response_format"),
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": 5}}}, "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "response_format.json_schema.name"),
    ],
)
def test_refusals_name_the_field(raw: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_openai_response_format(raw)
    assert caught.value.param == param


def test_the_prompt_asks_for_json_only_and_shows_the_schema() -> None:
    fmt = parse_openai_response_format(SCHEMA_FORMAT)
    assert fmt is not None
    text = json_instructions(fmt)
    assert "one JSON value and nothing else" in text and '"person"' in text and '"age":{"type":"integer"}' in text
    assert "must be a JSON object" in json_instructions(ResponseFormat(kind="json_object"))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('  \n{"a": 1}\n', '{"a": 1}'),
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("Here you go:\n\n~~~\n[1, 2]\n~~~\nEnjoy.", "[1, 2]"),
        ('Sure! {"a": {"b": [1]}} Hope that helps.', '{"a": {"b": [1]}}'),
        ("no json here", "no json here"),
    ],
)
def test_extraction_strips_fences_and_prose(answer: str, expected: str) -> None:
    assert extract_json(answer) == expected


def test_a_valid_answer_becomes_exactly_the_json_text() -> None:
    fmt = parse_openai_response_format(SCHEMA_FORMAT)
    assert fmt is not None
    result = check_json_output('```json\n{"name": "Ada", "age": 36}\n```', fmt)
    assert result.error is None
    assert result.json_text == '{"name": "Ada", "age": 36}'
    assert result.value == {"name": "Ada", "age": 36}


def test_invalid_json_is_a_502_saying_what_failed() -> None:
    result = check_json_output('{"name": "Ada", "age": }', ResponseFormat(kind="json_object"))
    error = result.error
    assert error is not None and (error.status, error.code) == (502, "invalid_json_output")
    assert "is not valid JSON: Expecting value (line 1, column 24)" in error.message


def test_json_object_mode_needs_an_object() -> None:
    error = check_json_output("[1, 2]", ResponseFormat(kind="json_object")).error
    assert error is not None and "not a JSON object" in error.message


def test_a_schema_mismatch_says_where() -> None:
    fmt = parse_openai_response_format(SCHEMA_FORMAT)
    assert fmt is not None
    error = check_json_output('{"name": "Ada", "age": "old", "x": 1}', fmt).error
    assert error is not None and error.code == "invalid_json_output"
    assert "does not match the schema person" in error.message
    assert "at $.age: 'old' is not of type 'integer'" in error.message
    assert "Additional properties are not allowed" in error.message
