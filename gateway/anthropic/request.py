"""The body of ``POST /v1/messages`` (and of ``/v1/messages/count_tokens``) -> ``MessagesRequest``.

    request = parse_messages_request(body, limits=..., max_messages=..., max_files=..., counting=False)

Refusals are ``InvalidRequest`` (400, Anthropic's ``invalid_request_error``) whose ``param`` names the
field Anthropic-style (``messages.2.content.1.source``); a ``base64`` file above the limit is 413.

* ``model`` and ``messages`` are required, and so is ``max_tokens`` (an integer >= 1), as on Anthropic's
  API; ``count_tokens`` (``counting=True``) takes no ``max_tokens``. ``max_tokens`` <= 1 marks a client's
  probe (``probe``: the door answers it locally when the key allows it).
* ``stop_sequences``, ``stream``, ``system``, ``tools``, ``tool_choice`` (tools.py), ``thinking``.
* Accepted and ignored (listed in ``ignored``): ``temperature``, ``top_p``, ``top_k``, ``metadata``,
  ``cache_control``, ``context_management``, ``output_config`` (but for its ``effort``), ``service_tier``,
  ``container``, ``mcp_servers``. Unknown fields are ignored too.
* Thinking: ``thinking: {type: "enabled", budget_tokens}`` or ``{type: "adaptive"}`` (or a thinking model
  name, ``kimi-thinking`` or an alias to it) turns Kimi's reasoning on and sends it as ``thinking``
  blocks; ``display: "omitted"`` sends them without their text. The effort: a budget under 4096 tokens,
  or ``output_config.effort: "low"``, is ``low``; a larger budget, ``medium``, ``high`` or ``max`` is
  ``high``; otherwise the model's own default.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from gateway.anthropic.content import ContentLimits, parse_message, parse_system
from gateway.anthropic.tools import AnthropicTools, parse_anthropic_tools
from gateway.kimi.base import ReasoningEffort
from gateway.openai.errors import InvalidRequest
from gateway.openai.messages import Attachment, Message, PartBudget
from gateway.openai.model_names import ModelSpec, parse_model
from gateway.tools.spec import ToolSet

ThinkingDisplay = Literal["summarized", "omitted"]
MAX_STOP_SEQUENCES = 16
LOW_BUDGET = 4096
_IGNORED = (
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "cache_control",
    "context_management",
    "output_config",
    "service_tier",
    "container",
    "mcp_servers",
)
_EFFORTS: dict[str, ReasoningEffort] = {"low": "low", "medium": "high", "high": "high", "max": "high"}


@dataclasses.dataclass(frozen=True)
class MessagesRequest:
    model: ModelSpec  # search / thinking already merged in
    messages: tuple[Message, ...]
    files: tuple[Attachment, ...]  # of the last user message, decoded
    max_tokens: int | None  # None only for count_tokens
    stream: bool = False
    stop_sequences: tuple[str, ...] = ()
    tools: ToolSet | None = None
    web_search: bool = False
    thinking: ThinkingDisplay | None = None  # None: no thinking blocks in the answer
    reasoning_effort: ReasoningEffort | None = None
    user: str = ""
    ignored: tuple[str, ...] = ()
    search_query: str = ""  # what a web search block says was searched for (the question)

    @property
    def probe(self) -> bool:
        """A client's probe (``max_tokens`` <= 1): nothing worth a turn (Turn.probe)."""
        return self.max_tokens is not None and self.max_tokens <= 1


def parse_messages_request(
    body: object, *, limits: ContentLimits, max_messages: int, max_files: int, counting: bool = False
) -> MessagesRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    model = _model(body)
    messages, files = _messages(body, limits, max_messages, max_files)
    tools = parse_anthropic_tools(body)
    thinking, effort = _thinking(body, model)
    if thinking is not None:
        model = dataclasses.replace(model, thinking=True)
    if tools.web_search:
        model = dataclasses.replace(model, search=True)
    return MessagesRequest(
        model=model,
        messages=messages,
        files=files,
        max_tokens=None if counting else _max_tokens(body),
        stream=False if counting else _bool(body, "stream"),
        stop_sequences=_stop_sequences(body),
        tools=tools.tools,
        web_search=tools.web_search,
        thinking=thinking,
        reasoning_effort=effort,
        user=_user(body),
        ignored=tuple(name for name in _IGNORED if name in body),
        search_query=_query(messages, tools),
    )


def _model(body: dict[str, object]) -> ModelSpec:
    name = body.get("model")
    if name is None:
        raise InvalidRequest("model: Field required", param="model", code="missing_required_parameter")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidRequest(
            "model must be a model name such as claude-sonnet-4-5.", param="model", code="invalid_value"
        )
    return parse_model(name)


def _messages(
    body: dict[str, object], limits: ContentLimits, max_messages: int, max_files: int
) -> tuple[tuple[Message, ...], tuple[Attachment, ...]]:
    raw = body.get("messages")
    if raw is None:
        raise InvalidRequest("messages: Field required", param="messages", code="missing_required_parameter")
    if not isinstance(raw, list):
        raise InvalidRequest("messages must be a list of messages.", param="messages", code="invalid_type")
    if len(raw) > max_messages:
        raise InvalidRequest(
            f"Too many messages: at most {max_messages} in one request.", param="messages", code="too_many_messages"
        )
    last_user = max((i for i, m in enumerate(raw) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    if last_user < 0:
        raise InvalidRequest("messages must include a user message.", param="messages", code="invalid_value")
    budget = PartBudget(limits.max_parts)
    system = parse_system(body.get("system"))
    messages: list[Message] = [Message(role="system", text=system)] if system else []
    files: tuple[Attachment, ...] = ()
    for i, item in enumerate(raw):
        parsed = parse_message(item, i, decode=i == last_user, parts=budget, limits=limits)
        if i == last_user:
            files = tuple(a for m in parsed for a in m.attachments if a.blob is not None or a.url is not None)
        messages += parsed
    if not any(m.role == "user" for m in messages):
        # Only tool results in the history: the prompt stage answers the latest user message.
        messages.insert(
            next(i for i, m in enumerate(messages) if m.role != "system"), Message(role="user", text="(continue)")
        )
    if len(files) > max_files:
        raise InvalidRequest(
            f"Too many files: at most {max_files} in the last user message.",
            param=f"messages.{last_user}.content",
            code="too_many_files",
        )
    return tuple(messages), files


def _max_tokens(body: dict[str, object]) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens", code="missing_required_parameter")
    if isinstance(value, float) and value.is_integer():  # 20.0 is an integer, as JSON Schema says
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest("max_tokens must be an integer of at least 1.", param="max_tokens", code="invalid_value")
    return value


def _stop_sequences(body: dict[str, object]) -> tuple[str, ...]:
    raw = body.get("stop_sequences")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise InvalidRequest("stop_sequences must be a list of strings.", param="stop_sequences", code="invalid_type")
    if len(raw) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"stop_sequences takes at most {MAX_STOP_SEQUENCES} sequences.",
            param="stop_sequences",
            code="invalid_value",
        )
    return tuple(dict.fromkeys(s for s in raw if s))


def _thinking(body: dict[str, object], model: ModelSpec) -> tuple[ThinkingDisplay | None, ReasoningEffort | None]:
    raw = body.get("thinking")
    if raw is not None and (not isinstance(raw, dict) or raw.get("type") not in ("enabled", "adaptive", "disabled")):
        raise InvalidRequest(
            'thinking must be {"type": "enabled" | "adaptive" | "disabled"}.', param="thinking", code="invalid_value"
        )
    config = raw or {}
    display: ThinkingDisplay = "omitted" if config.get("display") == "omitted" else "summarized"
    output = body.get("output_config")
    asked = output.get("effort") if isinstance(output, dict) else None
    effort = _EFFORTS.get(asked) if isinstance(asked, str) else None
    if config.get("type") == "enabled":
        budget = config.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool) and effort is None:
            effort = "low" if budget < LOW_BUDGET else "high"
        return display, effort
    if config.get("type") == "adaptive" or (model.thinking and config.get("type") != "disabled"):
        return display, effort
    return None, None


def _bool(body: dict[str, object], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean.", param=name, code="invalid_type")
    return value


def _user(body: dict[str, object]) -> str:
    """``metadata.user_id`` for the log. Claude Code sends a JSON string (device, account, session ids):
    its session id is what tells one run's requests apart."""
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user, str):
        return ""
    try:
        ids = json.loads(user) if user.startswith("{") else None
    except ValueError:
        ids = None
    if isinstance(ids, dict) and isinstance(ids.get("session_id"), str):
        return f"session:{ids['session_id']}"[:100]
    return user[:100]


def _query(messages: tuple[Message, ...], tools: AnthropicTools) -> str:
    if not tools.web_search:
        return ""
    users = [m.text for m in messages if m.role == "user" and m.text.strip()]
    return " ".join(users[-1].split())[:200] if users else ""
