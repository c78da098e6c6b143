"""gateway/tools/json_fence.py: a streamed JSON answer without its code fence, split anywhere."""

from __future__ import annotations

import pytest

from gateway.tools.json_fence import JsonFenceStripper

BODY = '{"code": "a`b ``` c", "list": [1, 2],\n "nested": {"x": null}}'


def stream(text: str, size: int) -> tuple[str, list[str]]:
    fence = JsonFenceStripper()
    pieces = [fence.feed(text[i : i + size]) for i in range(0, len(text), size)]
    pieces.append(fence.feed("", final=True))
    return "".join(pieces), pieces


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"```json\n{BODY}\n```", BODY),
        (f"  \n```JSON \n{BODY}\n```\n\nHope this helps!", BODY),  # prose after the fence is dropped
        (f"~~~\r\n{BODY}\r\n~~~", BODY),
        (f"``` json\n{BODY}```", BODY),  # the closing fence right after the value
        (BODY, BODY),  # no fence: unchanged
        (f"Here it is: {BODY}", f"Here it is: {BODY}"),  # prose first: unchanged (the final check decides)
        ("`x`", "`x`"),
        ("", ""),
    ],
)
def test_it_strips_the_fence_wherever_the_answer_is_split(text: str, expected: str) -> None:
    for size in range(1, len(text) + 2):
        assert stream(text, size)[0] == expected, size


def test_it_holds_back_only_what_could_still_be_a_fence() -> None:
    fence = JsonFenceStripper()
    assert fence.feed("``") == ""  # could open a fence
    assert fence.feed("`json\n{") == "{"
    assert fence.feed('"a": 1}\n`') == '"a": 1}'  # the newline and backtick could close it
    assert fence.feed("``") == ""  # the closing fence
    assert fence.feed("\nmore words") == ""  # after it: dropped
    plain = JsonFenceStripper()
    assert plain.feed('{"a": ') == '{"a": '  # no fence: nothing held back
    assert plain.feed("1}") == "1}"
