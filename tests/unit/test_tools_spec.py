"""OpenAI's tools / tool_choice / parallel_tool_calls -> the neutral ToolSet (gateway/tools/spec.py)."""

from __future__ import annotations

import re

import pytest

from gateway.openai.errors import InvalidRequest
from gateway.tools.spec import ToolChoice, new_call_id, new_nonce, parse_openai_history_calls, parse_openai_tools

FN = {"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}
CUSTOM = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}},
    },
}


def test_no_tools_is_none_even_with_a_default_tool_choice() -> None:
    assert parse_openai_tools({}) is None
    assert parse_openai_tools({"tools": [], "tool_choice": "auto"}) is None
    assert parse_openai_tools({"tool_choice": "none"}) is None


def test_function_and_custom_tools_are_parsed() -> None:
    tools = parse_openai_tools({"tools": [FN, CUSTOM], "parallel_tool_calls": False})
    assert tools is not None
    assert [(t.name, t.kind) for t in tools.tools] == [("get_weather", "function"), ("apply_patch", "custom")]
    assert tools.tools[1].grammar == "lark: start: /.+/"
    assert tools.parallel is False
    assert tools.choice == ToolChoice()


@pytest.mark.parametrize(
    ("choice", "expected", "offered"),
    [
        ("auto", ToolChoice("auto"), ["get_weather", "apply_patch"]),
        ("none", ToolChoice("none"), []),
        ("required", ToolChoice("required"), ["get_weather", "apply_patch"]),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            ToolChoice("named", ("get_weather",)),
            ["get_weather"],
        ),
        ({"type": "custom", "custom": {"name": "apply_patch"}}, ToolChoice("named", ("apply_patch",)), ["apply_patch"]),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
            ToolChoice("required", ("get_weather",)),
            ["get_weather"],
        ),
    ],
)
def test_every_tool_choice(choice: object, expected: ToolChoice, offered: list[str]) -> None:
    tools = parse_openai_tools({"tools": [FN, CUSTOM], "tool_choice": choice})
    assert tools is not None
    assert tools.choice == expected
    assert [t.name for t in tools.offered] == offered
    assert tools.required == (expected.mode in ("required", "named"))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [FN], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [FN], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": "x"}, "tools"),
        ({"tools": [FN, FN]}, "tools[1]"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "x", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [FN], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]}, "tools"),
    ],
)
def test_refusals_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_openai_tools(body)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_find_matches_exactly_then_by_case_then_without_the_functions_prefix() -> None:
    tools = parse_openai_tools({"tools": [FN]})
    assert tools is not None
    assert tools.find("get_weather") is tools.tools[0]
    assert tools.find("GET_WEATHER") is tools.tools[0]
    assert tools.find("functions.get_weather") is tools.tools[0]
    assert tools.find("get_wether") is None


def test_history_calls_keep_the_clients_ids() -> None:
    raw = [
        {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
        {"id": "c", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}},
    ]
    calls = parse_openai_history_calls(raw, param="messages[1].tool_calls")
    assert [(c.id, c.kind, c.arguments) for c in calls] == [
        ("toolu_01", "function", '{"city":"Paris"}'),
        ("x", "function", '{"city": "Rome"}'),
        ("c", "custom", "*** Begin Patch"),
    ]
    with pytest.raises(InvalidRequest) as caught:
        parse_openai_history_calls([{"type": "function"}], param="messages[1].tool_calls")
    assert caught.value.param == "messages[1].tool_calls[0].id"


def test_call_ids_and_nonces_are_fresh() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)
    assert new_nonce() != new_nonce()
