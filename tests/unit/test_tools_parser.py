"""The streaming tool-call parser (gateway/tools/parser.py): the envelope form, splits, outcomes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tools.parser import LONGEST_MARKER, CallReady, CallStarted, Text, ToolCallParser
from gateway.tools.spec import ToolSet
from tests.unit.tools_support import NONCE, counter_ids, envelope, invoke, run, split_every, toolset

CALL = envelope(invoke("get_weather", city="Paris", days="3"))
PARIS = ("get_weather", '{"city": "Paris", "days": 3}')
PLAIN = (
    "Here is the answer. Compare a < b and x<y, use `code`, and <b>bold</b> HTML.\n"
    "```python\nprint('<tool')\n```\nThe end <tool"
)


def test_a_plain_answer_with_tools_declared_is_forwarded_whole_and_nothing_is_held_at_the_end() -> None:
    result = run(split_every(PLAIN, 7))
    assert result.text == PLAIN
    assert result.calls == ()
    assert result.finish.error is None
    assert result.parser.held == ""
    assert result.parser.stats.outcome == "text"


def test_plain_text_leaves_as_it_arrives_holding_back_only_a_possible_marker() -> None:
    parser = ToolCallParser(toolset(), nonce=NONCE)
    assert parser.feed("Hello, world") == [Text("Hello, world")]
    assert parser.feed(" and <to") == [Text(" and ")]
    assert parser.held == "<to"
    assert parser.feed("day>") == [Text("<today>")]
    assert parser.held == ""


def test_one_call_without_text_before_it() -> None:
    result = run(CALL)
    assert result.text == ""
    assert result.arguments() == [PARIS]
    assert result.kinds == ["CallStarted", "CallReady", "BlockClosed"]
    assert result.calls[0].id == "call_" + "1".zfill(24)
    assert result.parser.stats.outcome == "tool_calls"


def test_one_call_with_text_before_it_forwards_only_that_text() -> None:
    result = run("Let me look that up.\n\n" + CALL)
    assert result.text == "Let me look that up.\n\n"
    assert result.arguments() == [PARIS]


def test_the_call_is_announced_as_soon_as_its_name_parses_and_given_out_when_its_arguments_complete() -> None:
    parser = ToolCallParser(toolset(), nonce=NONCE, new_id=counter_ids())
    head = f'<tool_calls id="{NONCE}">\n<invoke name="get_weather">'
    events = parser.feed(head)
    assert [type(e) for e in events] == [CallStarted]
    assert isinstance(events[0], CallStarted) and events[0].name == "get_weather" and events[0].index == 0
    assert parser.feed('\n<parameter name="city">Par') == []
    ready = parser.feed("is</parameter>\n</invoke>")
    assert [type(e) for e in ready] == [CallReady]
    assert not parser.closed
    assert [type(e).__name__ for e in parser.feed("\n</tool_calls>")] == ["BlockClosed"]
    assert parser.closed


@pytest.mark.parametrize("prefix", ["", "Checking.\n"])
def test_a_call_split_at_every_offset_gives_the_same_result(prefix: str) -> None:
    answer = prefix + CALL + "\nIt is sunny."
    whole = run(answer)
    for cut in range(len(answer) + 1):
        result = run([answer[:cut], answer[cut:]])
        assert (result.text, result.arguments(), result.kinds) == (whole.text, whole.arguments(), whole.kinds), cut
        assert result.max_held <= LONGEST_MARKER


def test_a_call_fed_one_character_at_a_time() -> None:
    answer = "Sure: " + CALL
    result = run(list(answer))
    assert result.text == "Sure: "
    assert result.arguments() == [PARIS]


@st.composite
def splits(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


TRICKY = (
    "Intro with `<tool_calls>` inline and a fence:\n```xml\n"
    + envelope(invoke("get_weather", city="Rome"))
    + "\n```\nNow for real:\n"
    + envelope(
        invoke(
            "write_file",
            path="a.py",
            content="<![CDATA[if a < b and '</parameter>' != \"]]]]><![CDATA[>\":\n    pass]]>",
        ),
        invoke("get_weather", city="Oslo"),
    )
    + "\nInvented result: sunny."
)


@settings(max_examples=150, deadline=None)
@given(splits(TRICKY))
def test_random_splits_of_a_tricky_answer_give_the_same_result(pieces: list[str]) -> None:
    result = run(pieces)
    assert result.text == TRICKY[: TRICKY.index("Now for real:\n") + len("Now for real:\n")]
    assert [c.name for c in result.calls] == ["write_file", "get_weather"]
    content = json.loads(result.calls[0].arguments)["content"]
    assert content == "if a < b and '</parameter>' != \"]]>\":\n    pass"
    assert result.max_held <= LONGEST_MARKER


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>`~\n |_tolcasinvkedbgprm:=\"'/![]{}", max_size=120), st.data())
def test_the_held_back_suffix_is_never_longer_than_the_longest_marker(text: str, data: st.DataObject) -> None:
    result = run(data.draw(splits(text)))
    assert result.max_held <= LONGEST_MARKER
    if not result.calls and not result.parser.stats.block_seen:
        assert result.text == text  # nothing lost when no block was seen


@pytest.mark.parametrize("count", [2, 3])
def test_several_invokes_in_one_block_are_parallel_calls(count: int) -> None:
    cities = ["Paris", "Rome", "Oslo"][:count]
    result = run(envelope(*[invoke("get_weather", city=c) for c in cities]))
    assert [json.loads(c.arguments)["city"] for c in result.calls] == cities
    assert [c.index for c in result.calls] == list(range(count))
    assert len({c.id for c in result.calls}) == count


def test_parallel_false_keeps_only_the_first_call() -> None:
    result = run(
        envelope(invoke("get_weather", city="Paris"), invoke("get_weather", city="Rome")), toolset(parallel=False)
    )
    assert [json.loads(c.arguments)["city"] for c in result.calls] == ["Paris"]
    assert "extra_calls_dropped" in result.parser.stats.flags


def test_string_arguments_hold_code_with_quotes_backslashes_and_newlines_raw() -> None:
    code = 'def f(s):\n    return s.replace("\\\\", "\\\\\\\\") + \'\\n\'  # "quoted"\n'
    result = run(envelope(invoke("write_file", path="f.py", content=code)))
    assert json.loads(result.calls[0].arguments)["content"] == code.removesuffix("\n")


def test_cdata_keeps_closing_tags_and_split_cdata_ends_inside_a_string_argument() -> None:
    code = "x = '</parameter></invoke></tool_calls>'\ny = ']]>'\n"
    cdata = "<![CDATA[" + code.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    result = run(envelope(invoke("write_file", path="t.py", content=cdata)))
    assert json.loads(result.calls[0].arguments)["content"] == code


def test_a_string_value_of_only_cdata_keeps_its_exact_whitespace() -> None:
    result = run(envelope(invoke("write_file", path="p", content="\n<![CDATA[\n  indented\n\n]]>\n")))
    assert json.loads(result.calls[0].arguments)["content"] == "\n  indented\n\n"


def test_non_string_values_are_json_coerced_to_the_schema() -> None:
    result = run(
        envelope(
            invoke(
                "write_file",
                path="42",
                content='{"looks": "like json"}',
                overwrite="true",
                mode="null",
                tags='["a", "b"]',
                options='{"indent": 4.0, "ratio": 0.5, "eol": "\\n"}',
            )
        )
    )
    args = json.loads(result.calls[0].arguments)
    assert args == {
        "path": "42",
        "content": '{"looks": "like json"}',
        "overwrite": True,
        "mode": None,
        "tags": ["a", "b"],
        "options": {"indent": 4, "ratio": 0.5, "eol": "\n"},
    }
    assert result.calls[0].problems == ()


def test_a_call_that_fails_its_schema_is_still_given_out_flagged() -> None:
    result = run(envelope(invoke("get_weather", days="soon")))
    call = result.calls[0]
    assert json.loads(call.arguments) == {"days": "soon"}
    assert any("city" in p and "required" in p for p in call.problems)
    assert any("$.days" in p for p in call.problems)
    assert result.parser.stats.schema_failures == 1
    assert "schema_invalid" in result.parser.stats.flags


def test_bare_json_shaped_like_a_tool_call_is_text() -> None:
    answer = 'As asked, literally: {"name": "get_weather", "arguments": {"city": "Paris"}}\n[{"type": "function"}]'
    result = run(split_every(answer, 5))
    assert result.text == answer
    assert result.calls == ()


@pytest.mark.parametrize(
    "wrapped",
    [
        "```\n{block}\n```",
        "~~~xml\n{block}\n~~~",
        "  ````\n{block}\n````   \n",
        "Inline: `{inline}` done.",
        "Double: ``a ` {inline}`` done.",
    ],
)
def test_markup_inside_code_is_text(wrapped: str) -> None:
    inline = f'<tool_calls id="{NONCE}"><invoke name="get_weather"></invoke></tool_calls>'
    answer = wrapped.format(block=CALL, inline=inline)
    for size in (1, 4, len(answer)):
        result = run(split_every(answer, size))
        assert result.text == answer, size
        assert result.calls == ()


def test_a_call_after_a_closed_fence_is_a_call() -> None:
    answer = "Example:\n```\n" + CALL + "\n```\nAnd now:\n" + CALL
    result = run(split_every(answer, 3))
    assert result.text == answer[: answer.rindex("<tool_calls")]
    assert result.arguments() == [PARIS]


def test_a_fence_line_with_an_info_string_does_not_close_the_fence() -> None:
    answer = "```\n```python\n" + CALL + "\n```\n"
    assert run(answer).calls == ()


def test_backticks_in_a_fences_opening_line_make_it_inline_code() -> None:
    answer = "```x``` and then\n" + CALL
    assert run(split_every(answer, 2)).arguments() == [PARIS]


def test_an_unclosed_inline_backtick_does_not_disable_calls_on_later_lines() -> None:
    answer = "It's a stray ` backtick.\n" + CALL
    assert run(answer).arguments() == [PARIS]


def test_a_block_with_a_wrong_nonce_is_text() -> None:
    answer = "Quoted: " + envelope(invoke("get_weather", city="Paris"), nonce="deadbeef")
    result = run(split_every(answer, 3))
    assert result.text == answer
    assert result.calls == ()
    assert "wrong_nonce" in result.parser.stats.flags


def test_a_block_without_an_id_is_accepted() -> None:
    result = run(envelope(invoke("get_weather", city="Paris", days="3"), nonce=None))
    assert result.arguments() == [PARIS]


def test_a_wrong_nonce_block_followed_by_a_real_one() -> None:
    answer = envelope(invoke("get_weather", city="X"), nonce="other") + "\n" + CALL
    result = run(split_every(answer, 4))
    assert result.text == answer[: answer.index(f'<tool_calls id="{NONCE}"')]
    assert result.arguments() == [PARIS]


@pytest.mark.parametrize("name", ["delete_all", "get_wether", "getweather", "get-weather", "weather"])
def test_a_block_naming_an_undeclared_or_near_miss_tool_is_text(name: str) -> None:
    answer = "See: " + envelope(invoke(name, city="Paris"))
    result = run(split_every(answer, 6))
    assert result.text == answer
    assert result.calls == ()
    assert result.parser.stats.unknown_names == (name,)


def test_a_tool_name_differing_only_in_case_is_the_declared_tool() -> None:
    result = run(envelope(invoke("Get_Weather", city="Paris", days="3")))
    assert result.arguments() == [PARIS]


def test_an_undeclared_call_after_a_declared_one_is_dropped() -> None:
    result = run(envelope(invoke("get_weather", city="Paris", days="3"), invoke("rm_rf", path="/")))
    assert result.arguments() == [PARIS]
    assert result.parser.stats.unknown_names == ("rm_rf",)


def test_a_named_choice_accepts_only_the_named_tool() -> None:
    tools = toolset("named", names=("write_file",))
    result = run(CALL, tools)
    assert result.calls == ()
    assert result.text == CALL
    assert result.finish.error is not None and result.finish.error.code == "tool_call_missing"


def test_tool_choice_none_forwards_a_block_as_text() -> None:
    result = run(split_every(CALL, 5), toolset("none"))
    assert result.text == CALL
    assert result.calls == ()
    assert result.finish.error is None
    assert result.parser.stats.outcome == "no_tools"


def test_without_tools_the_parser_forwards_everything() -> None:
    result = run(split_every(CALL, 5), ToolSet(tools=()))
    assert result.text == CALL


@pytest.mark.parametrize(("mode", "names"), [("required", ()), ("named", ("get_weather",))])
def test_required_and_named_fail_with_tool_call_missing_when_the_answer_has_no_call(
    mode: str, names: tuple[str, ...]
) -> None:
    result = run("I would rather not.", toolset(mode, names=names))
    assert result.text == "I would rather not."
    error = result.finish.error
    assert error is not None and (error.status, error.code) == (502, "tool_call_missing")
    assert result.parser.stats.outcome == "tool_call_missing"


@pytest.mark.parametrize(("mode", "names"), [("auto", ()), ("required", ()), ("named", ("get_weather",))])
def test_every_tool_choice_accepts_a_call_of_an_offered_tool(mode: str, names: tuple[str, ...]) -> None:
    result = run(CALL, toolset(mode, names=names))
    assert result.arguments() == [PARIS]
    assert result.finish.error is None


def test_allowed_tools_restricts_the_calls_accepted() -> None:
    tools = toolset("auto", names=("write_file",))
    assert run(CALL, tools).calls == ()


CUT = f'Let me check.\n<tool_calls id="{NONCE}">\n<invoke name="get_weather">\n<parameter name="city">Par'


def test_a_stream_ending_inside_a_block_under_auto_keeps_the_text_before_it_without_markup() -> None:
    result = run(split_every(CUT, 4))
    assert result.text == "Let me check.\n"
    assert result.calls == ()
    assert result.finish.error is None
    assert "unclosed" in result.parser.stats.flags
    assert result.parser.stats.outcome == "text"


def test_a_stream_ending_inside_a_block_under_required_is_tool_call_malformed() -> None:
    result = run(CUT, toolset("required"))
    error = result.finish.error
    assert error is not None and (error.status, error.code) == (502, "tool_call_malformed")


def test_a_stream_ending_after_a_complete_call_without_the_closing_tags_uses_the_call() -> None:
    for answer in (CALL.removesuffix("\n</tool_calls>"), CALL.removesuffix("</invoke>\n</tool_calls>")):
        result = run(answer, toolset("required"))
        assert result.arguments() == [PARIS], answer
        assert result.finish.error is None
        assert result.kinds == ["CallStarted", "CallReady", "BlockClosed"]


def test_an_unfinished_header_at_the_end_is_text() -> None:
    result = run("Use the <tool_calls ")
    assert result.text == "Use the <tool_calls "
    assert result.parser.stats.outcome == "text"


def test_text_and_an_invented_result_after_the_block_are_never_forwarded() -> None:
    parser = ToolCallParser(toolset(), nonce=NONCE)
    events = parser.feed(CALL + "\n<tool_result>sunny, 25°C</tool_result>\nIt is sunny in Paris.")
    assert [type(e).__name__ for e in events] == ["CallStarted", "CallReady", "BlockClosed"]
    assert parser.feed(" More invented text.") == []
    end = parser.finish()
    assert end.events == ()
    assert parser.stats.trailing_chars == len("\n<tool_result>sunny, 25°C</tool_result>\nIt is sunny in Paris.") + 20
    assert "trailing_after_tool" in parser.stats.flags
    assert parser.trailing.startswith("\n<tool_result>")


def test_the_same_block_twice_ends_the_turn_at_the_first() -> None:
    result = run(split_every(CALL + "\n" + CALL, 9))
    assert result.arguments() == [PARIS]
    assert result.kinds == ["CallStarted", "CallReady", "BlockClosed"]


def test_a_block_whose_calls_are_all_unusable_is_dropped_and_the_answer_goes_on() -> None:
    broken = (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
        '{"city": <|tool_call_end|><|tool_calls_section_end|>'
    )
    result = run(split_every(broken + "\nNo tool needed: 4.", 5))
    assert result.text == "\nNo tool needed: 4."
    assert {"malformed_block", "bad_arguments"} <= set(result.parser.stats.flags)
    required = run(broken, toolset("required"))
    assert required.finish.error is not None and required.finish.error.code == "tool_call_malformed"


@pytest.mark.parametrize(
    "answer",
    [
        "Wrap your calls in <tool_calls> and </tool_calls>, one <invoke> each.",
        "An empty <tool_calls></tool_calls> block means nothing.",
        "Use <tool_calls to call tools, where a > b.",
        "The answer ends by naming <tool_calls>",
    ],
)
def test_the_envelope_tags_written_as_words_stay_text(answer: str) -> None:
    for size in (1, 7, len(answer)):
        result = run(split_every(answer, size))
        assert result.text == answer, size
        assert result.calls == ()


def test_an_empty_block_with_this_requests_nonce_is_a_failed_call_not_text() -> None:
    for answer in (f'Checking.\n<tool_calls id="{NONCE}">\n</tool_calls>', f'Checking.\n<tool_calls id="{NONCE}">\n'):
        result = run(answer, toolset("required"))
        assert result.text == "Checking.\n", answer
        assert result.finish.error is not None and result.finish.error.code == "tool_call_malformed"


def test_a_call_inside_reasoning_is_used_when_the_visible_answer_is_empty() -> None:
    reasoning = "I need the weather. " + CALL + " Then I wait."
    result = run(["", "  \n"], reasoning=reasoning)
    assert result.arguments() == [PARIS]
    assert result.kinds == ["CallStarted", "CallReady"]
    assert result.parser.stats.form == "reasoning"
    assert "from_reasoning" in result.parser.stats.flags


def test_a_call_inside_reasoning_is_ignored_when_the_answer_has_text() -> None:
    result = run("It is probably sunny.", reasoning=CALL)
    assert result.calls == ()


def test_reasoning_with_two_different_blocks_is_ambiguous_and_unused() -> None:
    other = envelope(invoke("get_weather", city="Rome"))
    assert run("", reasoning=CALL + "\nor maybe\n" + other).calls == ()
    assert run("", reasoning=CALL + "\nagain:\n" + CALL).arguments() == [PARIS]


def test_required_with_a_call_only_in_reasoning_is_satisfied() -> None:
    result = run("", toolset("required"), reasoning=CALL)
    assert result.finish.error is None
    assert result.arguments() == [PARIS]


def test_a_freeform_tool_takes_its_body_from_the_input_parameter() -> None:
    patch = "*** Begin Patch\n*** Update File: a.py\n-x = 1 < 2\n+x = 2\n*** End Patch"
    result = run(envelope(invoke("apply_patch", input=f"<![CDATA[{patch}]]>")))
    call = result.calls[0]
    assert (call.kind, call.name, call.arguments) == ("custom", "apply_patch", patch)


def test_a_freeform_tool_body_written_straight_into_the_invoke_is_its_input() -> None:
    body = "\n*** Begin Patch\n*** End Patch\n"
    answer = f'<tool_calls id="{NONCE}">\n<invoke name="apply_patch">{body}</invoke>\n</tool_calls>'
    result = run(split_every(answer, 3))
    assert result.calls[0].arguments == "*** Begin Patch\n*** End Patch"


def test_a_long_argument_in_small_pieces_is_parsed_whole() -> None:
    body = "".join(f"line {i}: a < b && c > d\n" for i in range(3000))
    answer = envelope(invoke("write_file", path="big.txt", content=f"<![CDATA[{body}]]>"))
    result = run(split_every(answer, 16))
    assert json.loads(result.calls[0].arguments)["content"] == body


def test_finish_is_idempotent() -> None:
    parser = ToolCallParser(toolset(), nonce=NONCE)
    parser.feed("Hi <tool")
    first = parser.finish()
    assert first.events == (Text("<tool"),)
    assert parser.finish().events == ()
