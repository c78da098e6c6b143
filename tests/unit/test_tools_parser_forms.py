"""The Kimi-trained call forms (K2, K3) and tag drift in the envelope (gateway/tools/blocks.py)."""

from __future__ import annotations

import json

import pytest

from gateway.tools.parser import LONGEST_MARKER
from tests.unit.tools_support import NONCE, run, split_every, toolset

PARIS = ("get_weather", '{"city": "Paris", "days": 3}')

K2 = (
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris", "days": 3}<|tool_call_end|><|tool_calls_section_end|>'
)
K2_TWO = (
    "<|tool_calls_section_begin|>\n<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
    '{"city": "Paris", "days": "3"}<|tool_call_end|>\n<|tool_call_begin|>functions.write_file:1'
    '<|tool_call_argument_begin|>{"path": "a", "content": "b", "overwrite": "false"}<|tool_call_end|>\n'
    "<|tool_calls_section_end|>"
)
K3 = (
    '<|open|>toolscall tool="get_weather" index="0"<|sep|>'
    '<|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|>'
    '<|open|>argument key="days" type="integer"<|sep|>3<|close|>argument<|sep|>'
    "<|close|>call<|sep|>"
)


@pytest.mark.parametrize("answer", [K2, K3], ids=["k2", "k3"])
def test_the_kimi_forms_are_calls_split_at_every_offset(answer: str) -> None:
    text = "One moment.\n" + answer
    for cut in range(len(text) + 1):
        result = run([text[:cut], text[cut:]])
        assert result.text == "One moment.\n", cut
        assert result.arguments() == [PARIS], cut
        assert result.max_held <= LONGEST_MARKER


def test_k2_with_two_calls_coerces_each_to_its_schema() -> None:
    result = run(split_every(K2_TWO, 5))
    assert [(c.name, json.loads(c.arguments)) for c in result.calls] == [
        ("get_weather", {"city": "Paris", "days": 3}),
        ("write_file", {"path": "a", "content": "b", "overwrite": False}),
    ]
    assert result.parser.stats.form == "k2"


def test_k2_section_marker_in_its_other_spelling() -> None:
    answer = K2.replace("tool_calls_section", "tool_call_section")
    assert run(answer).arguments() == [PARIS]


def test_k2_with_broken_json_is_no_call() -> None:
    answer = K2.replace('{"city": "Paris", "days": 3}', '{"city": "Paris", days: 3')
    result = run(answer, toolset("required"))
    assert result.calls == ()
    assert result.text == ""
    assert result.finish.error is not None and result.finish.error.code == "tool_call_malformed"


def test_k2_naming_an_undeclared_tool_is_text() -> None:
    answer = K2.replace("functions.get_weather", "functions.drop_tables")
    result = run(split_every(answer, 7))
    assert result.text == answer
    assert result.parser.stats.unknown_names == ("drop_tables",)


def test_k3_with_two_consecutive_calls_is_one_block() -> None:
    second = K3.replace("Paris", "Rome").replace('index="0"', 'index="1"')
    result = run(split_every(K3 + "\n" + second + "\nInvented: sunny.", 6))
    assert [json.loads(c.arguments)["city"] for c in result.calls] == ["Paris", "Rome"]
    assert result.parser.stats.trailing_chars == len("Invented: sunny.")  # the whitespace was read as a gap
    assert result.parser.stats.form == "k3"


def test_k3_uses_the_type_hint_for_an_undeclared_key_and_the_schema_otherwise() -> None:
    answer = K3.replace('type="integer"<|sep|>3', 'type="string"<|sep|>3').replace(
        "<|close|>call", '<|open|>argument key="extra" type="boolean"<|sep|>true<|close|>argument<|sep|><|close|>call'
    )
    result = run(answer)
    assert json.loads(result.calls[0].arguments) == {"city": "Paris", "days": 3, "extra": True}


def test_k3_naming_an_undeclared_tool_is_text() -> None:
    answer = K3.replace('tool="get_weather"', 'tool="format_disk"')
    assert run(split_every(answer, 4)).text == answer


def test_k3_ending_the_stream_after_its_close_is_complete() -> None:
    result = run(K3, toolset("required"))
    assert result.arguments() == [PARIS]
    assert result.finish.error is None


@pytest.mark.parametrize("answer", [K2, K3], ids=["k2", "k3"])
def test_the_kimi_forms_inside_a_fence_are_text(answer: str) -> None:
    fenced = "```\n" + answer + "\n```"
    assert run(split_every(fenced, 3)).text == fenced


DRIFT = [
    f'<TOOL_CALLS ID="{NONCE}">\n<Invoke Name="get_weather">\n<PARAMETER NAME="city">Paris</PARAMETER>\n'
    '<parameter name="days">3</parameter>\n</INVOKE>\n</Tool_Calls>',
    f"<tool_calls   id = '{NONCE}' >\n\n  <invoke  name = \"get_weather\" >\n"
    '    <parameter name="city" >Paris</ parameter >\n    <parameter name="days">\n 3 \n</parameter>\n'
    "  </ invoke >\n</tool_calls >",
    f'<tool_calls id="{NONCE}"><invoke name="get_weather"><parameter name="city">Paris</parameter>'
    '<parameter name="days">3</parameter></invoke></tool_calls>',
    f'<tool_calls id="{NONCE}">\nsome stray words\n<invoke name="get_weather" call_id="x">\n'
    '<parameter name="city">Paris</parameter>\n<note/>\n<parameter name="days">3</parameter>\n</tool_calls>',
]


@pytest.mark.parametrize("answer", DRIFT, ids=["case", "whitespace", "one_line", "stray_and_no_invoke_end"])
def test_tag_case_and_whitespace_drift_is_tolerated(answer: str) -> None:
    for size in (1, 5, len(answer)):
        result = run(split_every(answer, size))
        assert result.arguments() == [PARIS], size
        assert result.text == ""


def test_a_self_closing_invoke_is_a_call_without_arguments() -> None:
    tools = toolset()
    answer = f'<tool_calls id="{NONCE}"><invoke name="get_weather"/></tool_calls>'
    result = run(answer, tools)
    assert [(c.name, c.arguments) for c in result.calls] == [("get_weather", "{}")]
    assert result.calls[0].problems  # city is required


def test_a_lookalike_tag_is_not_a_start_marker() -> None:
    answer = "The <tool_callsign> tag and <|open|>toolscalls and <|tool_calls_section|> stay text."
    assert run(split_every(answer, 2)).text == answer
