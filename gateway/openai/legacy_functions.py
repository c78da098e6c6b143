"""The legacy ``functions`` / ``function_call`` fields of chat completions, read as ``tools`` /
``tool_choice`` (OpenAI deprecated them; older clients and frameworks still send them).

``legacy_functions_as_tools(body)`` rewrites a body that uses them into the current shape before it
is parsed, so the tool pipeline sees one form: ``functions[i]`` becomes ``tools[i]`` (type
``function``), ``function_call`` ``"none"`` / ``"auto"`` / ``{"name": ...}`` becomes the matching
``tool_choice``, and only one call per answer is kept (the legacy shape has room for one). In the
history, an assistant message's ``function_call`` becomes one ``tool_calls`` entry with an id made
up here (``call_fn`` + the message's index), and a ``role: "function"`` result answers the latest
such call of its ``name``. The answer goes back in the legacy shape too (``message.function_call``,
``finish_reason: "function_call"``; gateway/openai/chunks.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.openai.errors import InvalidRequest


def legacy_functions_as_tools(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body in the current shape, and whether it used the legacy fields (the answer's shape)."""
    functions = body.get("functions")
    if functions is None and body.get("function_call") is None:
        return dict(body), False
    if body.get("tools") is not None or body.get("tool_choice") is not None:
        raise InvalidRequest(
            "Send either tools/tool_choice or the legacy functions/function_call, not both.",
            param="functions",
            code="invalid_value",
        )
    if functions is not None and not isinstance(functions, list):
        raise InvalidRequest("functions must be a list of functions.", param="functions", code="invalid_type")
    rewritten = {k: v for k, v in body.items() if k not in ("functions", "function_call")}
    if functions:
        rewritten["tools"] = [{"type": "function", "function": f} for f in functions]
        rewritten["parallel_tool_calls"] = False
        choice = _choice(body.get("function_call"))
        if choice is not None:
            rewritten["tool_choice"] = choice
    messages = body.get("messages")
    if isinstance(messages, list):
        rewritten["messages"] = _messages(messages)
    return rewritten, bool(functions)


def _choice(raw: object) -> object:
    if raw is None or raw in ("none", "auto"):
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise InvalidRequest(
        'function_call must be "none", "auto" or {"name": ...}.', param="function_call", code="invalid_value"
    )


def _messages(messages: list[Any]) -> list[Any]:
    latest: dict[str, str] = {}  # function name -> the id given to its latest call
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            out.append(message)
            continue
        call = message.get("function_call")
        if message.get("role") == "assistant" and isinstance(call, dict) and not message.get("tool_calls"):
            call_id = f"call_fn{i}"
            name = call.get("name")
            if isinstance(name, str):
                latest[name] = call_id
            function = {"name": name, "arguments": call.get("arguments", "")}
            message = {k: v for k, v in message.items() if k != "function_call"}
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
        elif message.get("role") == "function":
            name = message.get("name")
            message = {**message, "role": "tool"}
            if isinstance(name, str) and name in latest and "tool_call_id" not in message:
                message["tool_call_id"] = latest[name]
        out.append(message)
    return out
