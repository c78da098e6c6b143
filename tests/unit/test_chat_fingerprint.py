"""The conversation fingerprint of native multi-turn (gateway/chat/fingerprint.py): what the model saw
decides, transport details do not, and nothing else matches."""

from __future__ import annotations

from gateway.chat.fingerprint import chain, seed
from gateway.openai.messages import Message
from gateway.tools.spec import ToolCall, ToolSet, ToolSpec

TOOLS = ToolSet(tools=(ToolSpec(name="get_weather", parameters={"type": "object"}),))


def _start(**overrides):
    options = {"door": "chat_completions", "model": "kimi", "tools": TOOLS, "response_format": None, **overrides}
    return seed(**options)


def _history(*, call_id="call_1", arguments='{"city": "Oslo", "unit": "C"}', result="3 C", answer="Blue."):
    call = ToolCall(id=call_id, name="get_weather", arguments=arguments)
    return (
        Message(role="system", text="Be terse."),
        Message(role="user", text="Weather?"),
        Message(role="assistant", text="", tool_calls=(call,)),
        Message(role="tool", text=result, tool_call_id=call_id),
        Message(role="assistant", text=answer),
    )


def test_transport_details_do_not_change_the_fingerprint():
    base = chain(_start(), _history())
    # Another call id (a client rewrote it), the same arguments spaced and ordered differently.
    assert chain(_start(), _history(call_id="toolu_x", arguments='{"unit":"C","city":"Oslo"}')) == base
    # Line endings and outer whitespace of a text.
    assert chain(_start(), _history(answer="Blue.\r\n"))[-1] == base[-1]
    # The developer role is the system role.
    developer = (Message(role="developer", text="Be terse."), *_history()[1:])
    assert chain(_start(), developer) == base


def test_what_the_model_saw_changes_it_from_that_message_on():
    base = chain(_start(), _history())
    changed = chain(_start(), _history(result="30 C"))
    assert changed[:3] == base[:3] and changed[3] != base[3] and changed[4] != base[4]
    assert chain(_start(), _history(arguments='{"city": "Rome", "unit": "C"}'))[2] != base[2]
    assert chain(_start(), _history(answer="Red."))[-1] != base[-1]


def test_the_frame_of_the_conversation_is_part_of_every_fingerprint():
    base = chain(_start(), _history())[0]
    other_tools = ToolSet(tools=(ToolSpec(name="get_weather", parameters={"type": "object", "required": ["x"]}),))
    for frame in ({"door": "messages"}, {"model": "kimi-thinking"}, {"tools": other_tools}, {"tools": None}):
        assert chain(_start(**frame), _history())[0] != base, frame


def test_the_order_of_messages_matters():
    history = _history()
    swapped = (history[0], history[1], history[4], history[3], history[2])
    assert chain(_start(), swapped)[-1] != chain(_start(), history)[-1]
