"""The body of ``POST /v1/chat/completions`` -> a validated ``ChatRequest``.

    body = parse_json_body(raw_bytes)                       # InvalidRequest(code="invalid_json")
    chat = parse_chat_request(body, max_messages=..., max_parts=..., max_files=..., max_file_bytes=...)

Every refusal is an ``InvalidRequest`` (400) whose ``param`` names the field, OpenAI-style
(``messages[2].content[1].image_url.url``), except a ``data:`` file above ``max_file_bytes``, which is
``PayloadTooLarge`` (413, code ``file_too_large``): 413 is only about size, counts are 400s
(codes ``too_many_messages``, ``too_many_parts``, ``too_many_files``).

Accepted and ignored (listed in ``ChatRequest.ignored`` when sent): ``temperature``, ``top_p``,
``presence_penalty``, ``frequency_penalty``, ``seed``, ``top_logprobs`` (0 only), ``logit_bias``.
Refused as unsupported: ``n`` > 1, ``logprobs: true``. Unknown fields are ignored, as most OpenAI-compatible servers do.

Our extensions: ``conversation_id`` (absent/null: a throw-away upstream chat; ``"new"``, or the
ancestor's ``"none"``: a new chat that is kept; anything else: continue that kept conversation),
``use_search`` (the ancestor's flag, ORed into the model's search flag) and ``reasoning_format``
(``field`` | ``think_tags`` | ``hidden``; None = the key's default).

``reasoning_effort`` (OpenAI's) becomes the neutral effort of the turn (kimi-web-protocol.md C.6):
``none`` -> none, ``minimal`` / ``low`` -> low, ``medium`` / ``high`` / ``xhigh`` -> high.

``tools`` / ``tool_choice`` / ``parallel_tool_calls`` become ``ChatRequest.tools`` (gateway/tools/spec.py;
None without tools); a bad one is a 400 naming the field (``tools[1].function.name``, ``tool_choice``).
The legacy ``functions`` / ``function_call`` are read as those (gateway/openai/legacy_functions.py).
``response_format`` (``json_object`` / ``json_schema``) becomes ``ChatRequest.response_format``
(gateway/tools/structured.py; None for ``text``).

Files and images are taken from the last user message only (``ChatRequest.files``, decoded); earlier
ones appear in the flattened history by name or URL.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Literal, TypeVar, cast

from gateway.kimi.base import ReasoningEffort
from gateway.openai.errors import InvalidRequest
from gateway.openai.legacy_functions import legacy_functions_as_tools
from gateway.openai.messages import Attachment, Message, PartBudget, parse_message
from gateway.openai.model_names import ModelSpec, parse_model
from gateway.tools.spec import ToolSet, parse_openai_tools
from gateway.tools.structured import ResponseFormat, parse_openai_response_format

T = TypeVar("T")
ReasoningFormat = Literal["field", "think_tags", "hidden"]
REASONING_FORMATS = ("field", "think_tags", "hidden")
MAX_STOP = 4
_CONVERSATION_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_NEW_CONVERSATION = ("new", "none")
_EFFORTS: dict[str, ReasoningEffort] = {
    "none": "none",
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
}
_IGNORED_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_IGNORED_OTHER: dict[str, type | tuple[type, ...]] = {
    "seed": int,
    "logit_bias": dict,
}


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    model: ModelSpec  # ``use_search`` already merged in
    messages: tuple[Message, ...]
    files: tuple[Attachment, ...]  # of the last user message, decoded; upload these
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None  # max_completion_tokens, else max_tokens
    stop: tuple[str, ...] = ()
    user: str | None = None
    keep_conversation: bool = False  # keep the upstream chat for continuation
    continue_conversation: str | None = None  # the conversation id to continue
    reasoning_format: ReasoningFormat | None = None
    reasoning_effort: ReasoningEffort | None = None  # None: the model's default
    ignored: tuple[str, ...] = ()  # accepted-but-ignored parameters the client sent
    tools: ToolSet | None = None  # the client's tools with its tool_choice applied
    response_format: ResponseFormat | None = None  # JSON asked for (None: plain text)
    legacy_functions: bool = False  # sent as functions/function_call: answer in that shape too


def parse_json_body(raw: bytes) -> object:
    """Decode a request body; malformed JSON (or not UTF-8) is an ``InvalidRequest``."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_chat_request(
    body: object, *, max_messages: int, max_parts: int, max_files: int, max_file_bytes: int | None = None
) -> ChatRequest:
    """Validate a decoded body (see the module docstring for what is accepted)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    body, legacy_functions = legacy_functions_as_tools(body)
    model = _model(body)
    messages, files = _messages(body, max_messages, max_parts, max_files, max_file_bytes)
    stream = _optional(body, "stream", bool, "a boolean") or False
    conversation = _optional(body, "conversation_id", str, "a string")
    if conversation is not None and not _CONVERSATION_ID_RE.fullmatch(conversation):
        raise InvalidRequest(
            'conversation_id must be "new" or an id returned by an earlier reply.',
            param="conversation_id",
            code="invalid_value",
        )
    keep = conversation is not None
    continue_id = None if conversation is None or conversation.lower() in _NEW_CONVERSATION else conversation
    if _optional(body, "use_search", bool, "a boolean"):
        model = dataclasses.replace(model, search=True)
    _check_unsupported(body)
    tools = parse_openai_tools(body)
    return ChatRequest(
        model=model,
        messages=messages,
        files=files,
        stream=stream,
        include_usage=stream and _include_usage(body),
        max_tokens=_max_tokens(body),
        stop=_stop(body),
        user=_optional(body, "user", str, "a string"),
        keep_conversation=keep,
        continue_conversation=continue_id,
        reasoning_format=_reasoning_format(body),
        reasoning_effort=_reasoning_effort(body),
        ignored=_ignored(body),
        tools=tools,
        response_format=parse_openai_response_format(body.get("response_format")),
        legacy_functions=legacy_functions and tools is not None,
    )


def _model(body: dict[str, object]) -> ModelSpec:
    name = _optional(body, "model", str, "a string")
    if name is None:
        return parse_model("kimi")
    if not name.strip() or len(name) > 200:
        raise InvalidRequest('model must be a model name such as "kimi".', param="model", code="invalid_value")
    return parse_model(name)


def _messages(
    body: dict[str, object], max_messages: int, max_parts: int, max_files: int, max_file_bytes: int | None
) -> tuple[tuple[Message, ...], tuple[Attachment, ...]]:
    raw = body.get("messages")
    if raw is None:
        raise InvalidRequest("messages is required.", param="messages", code="missing_required_parameter")
    if not isinstance(raw, list):
        raise InvalidRequest("messages must be a list of messages.", param="messages", code="invalid_type")
    if not raw:
        raise InvalidRequest("messages must not be empty.", param="messages", code="invalid_value")
    if len(raw) > max_messages:
        raise InvalidRequest(
            f"Too many messages: at most {max_messages} in one request.", param="messages", code="too_many_messages"
        )
    last_user = max((i for i, m in enumerate(raw) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    budget = PartBudget(max_parts)
    messages = tuple(
        parse_message(m, i, decode=i == last_user, parts=budget, max_file_bytes=max_file_bytes)
        for i, m in enumerate(raw)
    )
    if last_user < 0:
        raise InvalidRequest("messages must include a user message.", param="messages", code="invalid_value")
    files = messages[last_user].attachments
    if len(files) > max_files:
        raise InvalidRequest(
            f"Too many files: at most {max_files} in the last user message.",
            param=f"messages[{last_user}].content",
            code="too_many_files",
        )
    return messages, files


def _include_usage(body: dict[str, object]) -> bool:
    options = _optional(body, "stream_options", dict, "an object")
    if not options:
        return False
    return _optional(options, "include_usage", bool, "a boolean", prefix="stream_options.") or False


def _max_tokens(body: dict[str, object]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = _optional(body, name, int, "an integer")
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"{name} must be at least 1.", param=name, code="invalid_value")
            return value
    return None


def _stop(body: dict[str, object]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("stop must be a string or a list of strings.", param="stop", code="invalid_type")
    if len(stop) > MAX_STOP:
        raise InvalidRequest(f"stop takes at most {MAX_STOP} sequences.", param="stop", code="invalid_value")
    return tuple(dict.fromkeys(s for s in stop if s))  # empty strings would stop at once; drop them


def _reasoning_format(body: dict[str, object]) -> ReasoningFormat | None:
    value = _optional(body, "reasoning_format", str, "a string")
    if value is not None and value not in REASONING_FORMATS:
        raise InvalidRequest(
            "reasoning_format must be one of field, think_tags, hidden.", param="reasoning_format", code="invalid_value"
        )
    return cast(ReasoningFormat | None, value)


def _reasoning_effort(body: dict[str, object]) -> ReasoningEffort | None:
    value = _optional(body, "reasoning_effort", str, "a string")
    if value is None:
        return None
    if value.lower() not in _EFFORTS:
        raise InvalidRequest(
            "reasoning_effort must be one of none, minimal, low, medium, high.",
            param="reasoning_effort",
            code="invalid_value",
        )
    return _EFFORTS[value.lower()]


def _check_unsupported(body: dict[str, object]) -> None:
    n = _optional(body, "n", int, "an integer")
    if n is not None and n < 1:
        raise InvalidRequest("n must be at least 1.", param="n", code="invalid_value")
    if n is not None and n > 1:
        raise InvalidRequest(
            "n > 1 is not supported: the gateway returns one choice.", param="n", code="unsupported_value"
        )
    if _optional(body, "logprobs", bool, "a boolean"):
        raise InvalidRequest("logprobs are not supported by this gateway.", param="logprobs", code="unsupported_value")
    if _optional(body, "top_logprobs", int, "an integer"):
        raise InvalidRequest(
            "top_logprobs is not supported by this gateway.", param="top_logprobs", code="unsupported_value"
        )


def _ignored(body: dict[str, object]) -> tuple[str, ...]:
    names = [n for n in _IGNORED_NUMBERS if _optional(body, n, float, "a number") is not None]
    for name, kind in _IGNORED_OTHER.items():
        value = body.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise InvalidRequest(f"{name} has the wrong type.", param=name, code="invalid_type")
        names.append(name)
    return tuple(names)


def _optional(body: dict[str, object], name: str, kind: type[T], expected: str, *, prefix: str = "") -> T | None:
    """``body[name]`` if present and of ``kind`` (null = absent); else a 400 naming the field.

    ``bool`` is never accepted as a number (JSON ``true`` is not 1 here); ``int`` is a ``float``, and a
    ``float`` without a fraction (``1.0``) is an ``int``, as JSON Schema's ``integer`` says.
    """
    value = body.get(name)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise InvalidRequest(f"{prefix}{name} must be {expected}.", param=f"{prefix}{name}", code="invalid_type")
    return cast(T, value)
