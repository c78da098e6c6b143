"""gateway/openai/legacy_functions.py: the legacy function fields rewritten into tools."""

from __future__ import annotations

import pytest

from gateway.openai.errors import InvalidRequest
from gateway.openai.legacy_functions import legacy_functions_as_tools

FN = {"name": "lookup", "parameters": {"type": "object"}}


def test_a_body_without_them_is_unchanged() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": FN}]}
    assert legacy_functions_as_tools(body) == (body, False)


@pytest.mark.parametrize(
    ("function_call", "tool_choice"),
    [(None, None), ("auto", "auto"), ("none", "none"), ({"name": "lookup"}, {"type": "function", "function": FN})],
)
def test_functions_become_tools_with_one_call_per_answer(function_call, tool_choice) -> None:
    body = {"messages": [], "functions": [FN], **({"function_call": function_call} if function_call else {})}
    rewritten, legacy = legacy_functions_as_tools(body)
    assert legacy and rewritten["tools"] == [{"type": "function", "function": FN}]
    assert rewritten["parallel_tool_calls"] is False and "functions" not in rewritten
    expected = {"type": "function", "function": {"name": "lookup"}} if isinstance(tool_choice, dict) else tool_choice
    assert rewritten.get("tool_choice") == expected


def test_history_calls_get_ids_and_results_answer_the_latest_call_of_their_name() -> None:
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": "{}"}},
        {"role": "function", "name": "lookup", "content": "r1"},
        {"role": "assistant", "content": "", "function_call": {"name": "lookup", "arguments": '{"a": 1}'}},
        {"role": "function", "name": "lookup", "content": "r2"},
        {"role": "function", "name": "never_called", "content": "r3"},
    ]
    rewritten, _ = legacy_functions_as_tools({"messages": messages, "functions": [FN]})
    out = rewritten["messages"]
    assert out[1]["tool_calls"] == [
        {"id": "call_fn1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    ]
    assert "function_call" not in out[1]
    assert (out[2]["role"], out[2]["tool_call_id"]) == ("tool", "call_fn1")
    assert out[4]["tool_call_id"] == "call_fn3"
    assert out[5]["role"] == "tool" and "tool_call_id" not in out[5]
    assert messages[1]["function_call"]  # the client's body is not changed in place


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"functions": [FN], "tools": []}, "functions"),
        ({"functions": [FN], "tool_choice": "auto"}, "functions"),
        ({"functions": {"name": "x"}}, "functions"),
        ({"functions": [FN], "function_call": "required"}, "function_call"),
    ],
)
def test_bad_legacy_fields_are_a_400_naming_the_field(body, param) -> None:
    with pytest.raises(InvalidRequest) as caught:
        legacy_functions_as_tools(body)
    assert caught.value.param == param
