"""The official order of a Responses event stream, as one checker every stream test runs.

response.created, response.in_progress,
per output item, one after the other (output_index 0, 1, ...):
    response.output_item.added
    message:       content_part.added, (output_text.delta | output_text.annotation.added)*,
                   output_text.done, content_part.done
    reasoning:     reasoning_summary_part.added, reasoning_summary_text.delta*, .text.done, .part.done
                   | reasoning_text.delta*, reasoning_text.done
    function_call: function_call_arguments.delta*, function_call_arguments.done
    custom_tool_call: custom_tool_call_input.delta*, custom_tool_call_input.done
    web_search_call: web_search_call.in_progress, .searching, .completed
    response.output_item.done
then exactly one of response.completed / response.incomplete / response.failed, last;
sequence_number 0, 1, 2, ... on every event.
"""

from __future__ import annotations

from typing import Any

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_BODY = {
    "message": [
        ("response.content_part.added", "once"),
        ("response.output_text.delta|response.output_text.annotation.added", "any"),
        ("response.output_text.done", "once"),
        ("response.content_part.done", "once"),
    ],
    "reasoning": [
        ("response.reasoning_summary_part.added", "optional"),
        ("response.reasoning_summary_text.delta|response.reasoning_text.delta", "any"),
        ("response.reasoning_summary_text.done|response.reasoning_text.done", "optional"),
        ("response.reasoning_summary_part.done", "optional"),
    ],
    "function_call": [
        ("response.function_call_arguments.delta", "any"),
        ("response.function_call_arguments.done", "once"),
    ],
    "custom_tool_call": [
        ("response.custom_tool_call_input.delta", "any"),
        ("response.custom_tool_call_input.done", "once"),
    ],
    "web_search_call": [
        ("response.web_search_call.in_progress", "once"),
        ("response.web_search_call.searching", "once"),
        ("response.web_search_call.completed", "once"),
    ],
}


def _plain(event: Any) -> dict[str, Any]:
    if isinstance(event, dict):
        return event
    return event.model_dump(mode="json", by_alias=True, warnings=False)


def assert_official_order(raw_events: list[Any]) -> None:
    events = [_plain(e) for e in raw_events]
    types = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events))), types
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] in TERMINAL and not any(t in TERMINAL for t in types[:-1]), types
    position = 2
    index = 0
    body = events[2:-1]
    while position - 2 < len(body):
        added = events[position]
        assert added["type"] == "response.output_item.added", (position, types)
        assert added["output_index"] == index, (position, types)
        kind = added["item"]["type"]
        item_id = added["item"]["id"]
        position += 1
        for names, count in _BODY[kind]:
            allowed = names.split("|")
            seen = 0
            while events[position]["type"] in allowed:
                assert events[position]["output_index"] == index and events[position]["item_id"] == item_id, types
                position += 1
                seen += 1
            assert count != "once" or seen == 1, (kind, names, types)
            assert count != "optional" or seen <= 1, (kind, names, types)
        done = events[position]
        assert done["type"] == "response.output_item.done" and done["output_index"] == index, (position, types)
        assert done["item"]["id"] == item_id and done["item"]["type"] == kind
        position += 1
        index += 1
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"]
    if types[-1] != "response.failed":
        assert len(final["output"]) == index
