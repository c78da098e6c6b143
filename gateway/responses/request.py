"""The body of ``POST /v1/responses`` -> a validated ``ResponsesRequest``.

``input`` is a string (one user message) or a list of items:

* ``message`` (also without ``type``, OpenAI's "easy" form): roles ``user``, ``assistant``, ``system``,
  ``developer``; content a string or parts ``input_text`` / ``output_text`` / ``refusal``,
  ``input_image`` (``image_url`` http(s) or ``data:``), ``input_file`` (``file_data`` or ``file_url``).
  They become chat messages and go through the chat completions parser (gateway/openai/messages.py),
  so files, sizes and the SSRF rules are the same; a refusal's ``param`` names ``input[i]``.
* ``function_call`` / ``custom_tool_call`` (the assistant's calls, ids as sent; a ``namespace`` is
  prefixed to the name as it was offered) and ``function_call_output`` / ``custom_tool_call_output``
  (tool results; ``output`` a string or text parts).
* ``reasoning`` is dropped (``encrypted_content`` ignored: earlier reasoning is never sent back), and
  so are items the gateway has no use for (``web_search_call``, ``tool_search_call``, ...; listed in
  ``ignored``). ``item_reference`` is refused: it needs a stored item the gateway does not keep.

``instructions`` is a system message first. ``previous_response_id`` continues the kept chat of that
stored response (only the new items are sent upstream). ``store`` (default true) keeps the chat and the
response; ``false`` (Codex) keeps nothing. ``max_output_tokens`` cuts the answer (status
``incomplete``); <= 1 is a client's probe (``Turn.probe``). ``reasoning.effort`` maps as chat
completions' ``reasoning_effort``; ``reasoning.summary`` chooses how reasoning is shown (summary parts
vs. reasoning text). ``text.format`` is the structured-output path. ``include``, ``prompt_cache_key``,
``client_metadata``, ``metadata``, ``user``, ``safety_identifier``, ``truncation``, ``temperature``,
``top_p``, ``service_tier``, ``text.verbosity`` are accepted; ``background: true``, ``conversation``
and ``prompt`` (templates) are refused as unsupported.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Literal, TypeVar, cast

from gateway.kimi.base import ReasoningEffort
from gateway.openai.errors import GatewayError, InvalidRequest
from gateway.openai.messages import Attachment, Message, PartBudget, parse_message
from gateway.openai.model_names import ModelSpec, parse_model
from gateway.responses.tools import ParsedTools, namespaces_of, parse_responses_tools
from gateway.tools.spec import ToolCall, ToolKind
from gateway.tools.structured import ResponseFormat, parse_openai_response_format

T = TypeVar("T")
SummaryMode = Literal["summary", "text"]
RESPONSE_ID_RE = re.compile(r"resp_[A-Za-z0-9]{1,96}")
ROLES = ("user", "assistant", "system", "developer")
EFFORTS: dict[str, ReasoningEffort] = {
    "none": "none",
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
}
_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}
DROPPED_ITEMS = (
    "reasoning",
    "web_search_call",
    "tool_search_call",
    "tool_search_output",
    "compaction",
    "image_generation_call",
)


@dataclasses.dataclass(frozen=True)
class ResponsesRequest:
    model: ModelSpec
    messages: tuple[Message, ...]
    files: tuple[Attachment, ...]
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    reasoning: Mapping[str, object] = dataclasses.field(default_factory=dict)  # echoed
    summary: SummaryMode = "text"
    tools: ParsedTools = ParsedTools(tools=None)
    namespaces: frozenset[str] = frozenset()
    raw_tools: tuple[object, ...] = ()  # echoed in the response object
    tool_choice: object = "auto"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    text: Mapping[str, object] = dataclasses.field(default_factory=lambda: {"format": {"type": "text"}})
    metadata: Mapping[str, object] = dataclasses.field(default_factory=dict)
    user: str | None = None
    prompt_cache_key: str | None = None
    ignored: tuple[str, ...] = ()

    @property
    def probe(self) -> bool:
        return self.max_output_tokens is not None and self.max_output_tokens <= 1


def parse_responses_request(
    body: object, *, max_messages: int, max_parts: int, max_files: int, max_file_bytes: int | None = None
) -> ResponsesRequest:
    """Validate a decoded body (see the module docstring)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    _refuse_unsupported(body)
    model = _model(body)
    tools = parse_responses_tools(body)
    namespaces = namespaces_of(body)
    if tools.search:
        model = dataclasses.replace(model, search=True)
    previous = _optional(body, "previous_response_id", str, "a string")
    if previous is not None and not RESPONSE_ID_RE.fullmatch(previous):
        raise InvalidRequest(
            "previous_response_id must be the id of an earlier response (resp_...).",
            param="previous_response_id",
            code="invalid_value",
        )
    instructions = _optional(body, "instructions", str, "a string")
    items, ignored = _items(body)
    messages, files = _messages(
        items, instructions, namespaces, max_messages=max_messages, max_parts=max_parts, max_file_bytes=max_file_bytes
    )
    offers_tools = tools.tools is not None and bool(tools.tools.offered)
    if not any(m.role == "user" for m in messages):
        if not (previous and offers_tools):
            raise InvalidRequest("input must include a user message.", param="input", code="invalid_value")
        if not _outputs_after_last_call(messages):  # nothing new to answer (the prompt would be empty)
            raise InvalidRequest(
                "input without a user message must end with the outputs of the calls it continues.",
                param="input",
                code="missing_tool_output",
            )
    if len(files) > max_files:
        raise InvalidRequest(
            f"Too many files: at most {max_files} in the last user message.", param="input", code="too_many_files"
        )
    reasoning: dict[str, object] = _optional(body, "reasoning", dict, "an object") or {}
    text: dict[str, object] = _optional(body, "text", dict, "an object") or {}
    max_output = _optional(body, "max_output_tokens", int, "an integer")
    if max_output is not None and max_output < 0:
        raise InvalidRequest("max_output_tokens must not be negative.", param="max_output_tokens", code="invalid_value")
    parallel = body.get("parallel_tool_calls")
    return ResponsesRequest(
        model=model,
        messages=messages,
        files=files,
        stream=_optional(body, "stream", bool, "a boolean") or False,
        store=_optional(body, "store", bool, "a boolean") is not False,
        previous_response_id=previous,
        instructions=instructions,
        max_output_tokens=max_output,
        reasoning_effort=_effort(reasoning),
        reasoning={"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        summary="summary" if reasoning.get("summary") in ("auto", "concise", "detailed") else "text",
        tools=tools,
        namespaces=namespaces,
        raw_tools=tuple(body.get("tools") or ()),
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=parallel is not False,
        response_format=_format(text),
        text={
            "format": text.get("format") or {"type": "text"},
            **({"verbosity": text["verbosity"]} if "verbosity" in text else {}),
        },
        metadata=_optional(body, "metadata", dict, "an object") or {},
        user=_optional(body, "user", str, "a string"),
        prompt_cache_key=_optional(body, "prompt_cache_key", str, "a string"),
        ignored=ignored,
    )


def _outputs_after_last_call(messages: tuple[Message, ...]) -> bool:
    last = max((n for n, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return any(m.role == "tool" for m in messages[last + 1 :])


def _refuse_unsupported(body: Mapping[str, object]) -> None:
    if body.get("background") is True:
        raise InvalidRequest(
            "background responses are not supported by this gateway.", param="background", code="unsupported_parameter"
        )
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            raise InvalidRequest(
                f"{name} is not supported by this gateway; send the input items (or previous_response_id).",
                param=name,
                code="unsupported_parameter",
            )


def _model(body: Mapping[str, object]) -> ModelSpec:
    name = _optional(body, "model", str, "a string")
    if name is None:
        return parse_model("kimi")
    if not name.strip() or len(name) > 200:
        raise InvalidRequest('model must be a model name such as "kimi".', param="model", code="invalid_value")
    return parse_model(name)


def _effort(reasoning: Mapping[str, object]) -> ReasoningEffort | None:
    value = reasoning.get("effort")
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in EFFORTS:
        raise InvalidRequest(
            "reasoning.effort must be one of none, minimal, low, medium, high, xhigh.",
            param="reasoning.effort",
            code="invalid_value",
        )
    return EFFORTS[value.lower()]


def _format(text: Mapping[str, object]) -> ResponseFormat | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format must be an object.", param="text.format", code="invalid_type")
    chat_shape: dict[str, object] = {"type": fmt.get("type")}
    if fmt.get("type") == "json_schema":
        chat_shape["json_schema"] = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    try:
        return parse_openai_response_format(chat_shape)
    except InvalidRequest as error:
        raise _renamed(error, "response_format.json_schema", "text.format") from None


def _items(body: Mapping[str, object]) -> tuple[list[tuple[int, dict[str, object]]], tuple[str, ...]]:
    raw = body.get("input")
    if raw is None:
        raise InvalidRequest("input is required.", param="input", code="missing_required_parameter")
    if isinstance(raw, str):
        return [(0, {"type": "message", "role": "user", "content": raw})], ()
    if not isinstance(raw, list):
        raise InvalidRequest("input must be a string or a list of items.", param="input", code="invalid_type")
    items: list[tuple[int, dict[str, object]]] = []
    ignored: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{i}] must be an object.", param=f"input[{i}]", code="invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "item_reference":
            raise InvalidRequest(
                "item_reference is not supported: send the item itself, or previous_response_id.",
                param=f"input[{i}]",
                code="unsupported_value",
            )
        if kind in (
            "message",
            "function_call",
            "function_call_output",
            "custom_tool_call",
            "custom_tool_call_output",
        ):
            items.append((i, {**item, "type": kind}))
        elif kind in DROPPED_ITEMS:
            continue
        else:
            ignored.append(f"input:{kind}"[:60])
    if not items:
        raise InvalidRequest("input must not be empty.", param="input", code="invalid_value")
    return items, tuple(dict.fromkeys(ignored))


def _messages(
    items: list[tuple[int, dict[str, object]]],
    instructions: str | None,
    namespaces: frozenset[str],
    *,
    max_messages: int,
    max_parts: int,
    max_file_bytes: int | None,
) -> tuple[tuple[Message, ...], tuple[Attachment, ...]]:
    if len(items) > max_messages:
        raise InvalidRequest(
            f"Too many input items: at most {max_messages} in one request.", param="input", code="too_many_messages"
        )
    last_user = max(
        (n for n, (_, item) in enumerate(items) if item["type"] == "message" and item.get("role") == "user"), default=-1
    )
    budget = PartBudget(max_parts)
    messages: list[Message] = [Message(role="system", text=instructions)] if instructions else []
    files: tuple[Attachment, ...] = ()
    for n, (i, item) in enumerate(items):
        kind = item["type"]
        if kind == "message":
            message = _message(item, i, decode=n == last_user, budget=budget, max_file_bytes=max_file_bytes)
            if n == last_user:
                files = message.attachments
            messages.append(message)
        elif kind in ("function_call", "custom_tool_call"):
            call = _call(item, i, namespaces, index=0)
            previous = messages[-1] if messages else None
            if previous is not None and previous.role == "assistant":
                merged = (*previous.tool_calls, dataclasses.replace(call, index=len(previous.tool_calls)))
                messages[-1] = dataclasses.replace(previous, tool_calls=merged)
            else:
                messages.append(Message(role="assistant", text="", tool_calls=(call,)))
        else:
            messages.append(_output(item, i))
    return tuple(messages), files


def _message(
    item: dict[str, object], i: int, *, decode: bool, budget: PartBudget, max_file_bytes: int | None
) -> Message:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"input[{i}].role must be one of user, assistant, system, developer; got {role!r:.40}.",
            param=f"input[{i}].role",
            code="invalid_value",
        )
    content = item.get("content")
    if isinstance(content, list):
        content = [_chat_part(part, f"input[{i}].content[{j}]") for j, part in enumerate(content)]
    try:
        return parse_message(
            {"role": role, "content": content}, i, decode=decode, parts=budget, max_file_bytes=max_file_bytes
        )
    except GatewayError as error:
        raise _renamed(error, "messages", "input") from None


def _chat_part(part: object, param: str) -> object:
    """A Responses content part in chat completions' shape (what gateway/openai/messages.py reads)."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if isinstance(kind, str) and kind in _TEXT_PARTS:  # (a dict is no key: the chat parser refuses it)
        field = _TEXT_PARTS[str(kind)]
        return {"type": "refusal" if field == "refusal" else "text", field: part.get(field)}
    if kind == "input_image":
        if part.get("image_url") is None and part.get("file_id") is not None:
            raise _file_id(param)
        return {"type": "image_url", "image_url": {"url": part.get("image_url")}}
    if kind == "input_file":
        if part.get("file_url") is not None:
            return {"type": "file", "file_url": {"url": part["file_url"]}}
        if part.get("file_data") is None and part.get("file_id") is not None:
            raise _file_id(param)
        return {"type": "file", "file": {"file_data": part.get("file_data"), "filename": part.get("filename")}}
    return part  # refused by the chat parser, named by its param


def _call(item: dict[str, object], i: int, namespaces: frozenset[str], *, index: int) -> ToolCall:
    kind: ToolKind = "custom" if item["type"] == "custom_tool_call" else "function"
    call_id = item.get("call_id") or item.get("id")
    name = item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequest(
            f"input[{i}] needs a call_id and a name.", param=f"input[{i}]", code="missing_required_parameter"
        )
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = f"{namespace}.{name}"
    value = item.get("input" if kind == "custom" else "arguments", "")
    if not isinstance(value, str):  # some clients send the arguments decoded
        value = json.dumps(value, ensure_ascii=False)
    return ToolCall(id=call_id, name=name, arguments=value, kind=kind, index=index)


def _output(item: dict[str, object], i: int) -> Message:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(f"input[{i}].call_id must be a string.", param=f"input[{i}].call_id", code="invalid_type")
    output = item.get("output", "")
    if isinstance(output, list):  # text parts (images in a tool result are mentioned, not uploaded)
        texts = []
        for part in output:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict):
                texts.append(f"[{part.get('type', 'part')}]")
        output = "\n".join(texts)
    elif not isinstance(output, str):
        output = json.dumps(output, ensure_ascii=False)
    return Message(role="tool", text=output, tool_call_id=call_id)


def _file_id(param: str) -> InvalidRequest:
    return InvalidRequest(
        "References to uploaded OpenAI files (file_id) are not supported; send the data or a URL instead.",
        param=f"{param}.file_id",
        code="unsupported_parameter",
    )


def _renamed(error: GatewayError, old: str, new: str) -> GatewayError:
    """The same refusal, its ``param`` (and message) naming the Responses field."""
    if error.param:
        error.param = error.param.replace(old, new, 1).replace("response_format", "text.format", 1)
    error.message = error.message.replace(old, new).replace("response_format", "text.format")
    return error


def _optional(body: Mapping[str, object], name: str, kind: type[T], expected: str) -> T | None:
    """``body[name]`` if present and of ``kind`` (null = absent); else a 400 naming the field. A float
    without a fraction (``20.0``) is an ``int``, as JSON Schema's ``integer`` (and OpenAI) say."""
    value = body.get(name)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        return cast(T, int(value))
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"{name} must be {expected}.", param=name, code="invalid_type")
    return value
