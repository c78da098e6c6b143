"""ReplyAssembler's hooks for client tools (gateway/openai/chunks.py): OpenAI's tool_calls deltas."""

from __future__ import annotations

from gateway.kimi.base import TextDelta, ThinkingDelta
from gateway.openai.chunks import ReplyAssembler
from gateway.tools.spec import ToolCall

CALL = ToolCall(id="call_x", name="get_weather", arguments='{"city":"Paris"}')


def assembler(**kwargs: object) -> ReplyAssembler:
    return ReplyAssembler(request_id="r", model="kimi", created=1, **kwargs)  # type: ignore[arg-type]


def deltas(chunks: list[dict[str, object]]) -> list[object]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]  # type: ignore[index]


def test_a_call_is_announced_then_given_its_arguments() -> None:
    reply = assembler()
    chunks = reply.feed(TextDelta("Checking. ")) + reply.tool_call(CALL) + reply.finish_tool_calls()
    got = deltas(chunks)
    assert got[0] == {"role": "assistant", "content": "Checking. "}
    assert got[1] == {
        "tool_calls": [
            {"index": 0, "id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ]
    }
    assert got[2] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]
    message = reply.completion()["choices"][0]["message"]  # type: ignore[index]
    assert message["content"] == "Checking. "
    assert message["tool_calls"] == [
        {"id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]


def test_a_call_alone_has_null_content_and_closes_a_think_block_first() -> None:
    reply = assembler(reasoning_format="think_tags")
    reply.feed(ThinkingDelta("plan"))
    chunks = reply.tool_call(CALL)
    assert deltas(chunks)[0] == {"content": "\n</think>\n\n"}
    reply.finish_tool_calls()
    assert reply.completion()["choices"][0]["message"]["content"] == "<think>\nplan\n</think>\n\n"  # type: ignore[index]
    plain = assembler()
    plain.tool_call(CALL)
    plain.finish_tool_calls()
    assert plain.completion()["choices"][0]["message"]["content"] is None  # type: ignore[index]


def test_a_custom_tool_call_carries_its_input() -> None:
    reply = assembler()
    call = ToolCall(id="call_p", name="apply_patch", arguments="*** Begin Patch", kind="custom")
    got = deltas(reply.tool_call(call))
    assert got[0]["tool_calls"][0]["custom"] == {"name": "apply_patch", "input": ""}  # type: ignore[index]
    assert got[1]["tool_calls"][0]["custom"] == {"input": "*** Begin Patch"}  # type: ignore[index]


def test_held_back_text_is_released_before_the_tool_calls_finish() -> None:
    reply = assembler(stop=("END",))
    chunks = reply.feed(TextDelta("almost E"))  # "E" may begin the stop sequence: held back
    assert "".join(d.get("content", "") for d in deltas(chunks)) == "almost "  # type: ignore[union-attr]
    released = deltas(reply.tool_call(CALL))
    assert released[0] == {"content": "E"} and "tool_calls" in released[1]  # type: ignore[operator]
    reply.finish_tool_calls()
    assert reply.finish_reason == "tool_calls"
