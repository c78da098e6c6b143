"""Anthropic's ``tools`` / ``tool_choice`` -> the tool core's ``ToolSet`` (gateway/tools/spec.py).

    parsed = parse_anthropic_tools(body)    # AnthropicTools(tools=ToolSet | None, web_search=bool)

* Custom tools ``{name, description, input_schema}`` (``type`` absent or ``"custom"``) are offered to the
  model through the tool core; the calls it writes come back as ``tool_use`` blocks whose ids look like
  Anthropic's (``toolu_`` + 24 letters and digits, ``new_tool_use_id``).
* The hosted web search tool (``type: "web_search_2025…"``) is served by Kimi's own search: it only turns
  search on for the turn (``web_search``); its options (``max_uses``, domains) are accepted and ignored.
* Other hosted or Anthropic-defined tool types (``bash_…``, ``text_editor_…``, ``computer_…``,
  ``code_execution_…``) are a 400 naming them: the gateway cannot run them, and the client did not
  describe them.
* ``tool_choice``: ``auto``, ``any`` (a call is required), ``tool`` (that one), ``none``;
  ``disable_parallel_tool_use`` keeps one call per answer.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from collections.abc import Mapping

from gateway.openai.errors import InvalidRequest
from gateway.tools.spec import EMPTY_SCHEMA, ToolChoice, ToolSet, ToolSpec, tool_name_and_description

MAX_TOOLS = 512  # Claude Code with a few MCP servers sends well over OpenAI's 128
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # Anthropic's own rule, plus "." for namespaced tools
_ID_ALPHABET = string.ascii_letters + string.digits
WEB_SEARCH_PREFIX = "web_search_"


def new_tool_use_id() -> str:
    """A ``tool_use`` id as Anthropic issues them: ``toolu_`` + 24 letters and digits (unguessable)."""
    return "toolu_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def new_server_tool_use_id() -> str:
    return "srvtoolu_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclasses.dataclass(frozen=True)
class AnthropicTools:
    tools: ToolSet | None = None  # the client's own tools (None: none declared)
    web_search: bool = False  # the hosted web search tool was declared


def parse_anthropic_tools(body: Mapping[str, object]) -> AnthropicTools:
    raw = body.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _type_error("tools", "a list of tools")
    if len(raw) > MAX_TOOLS:
        raise InvalidRequest(f"Too many tools: at most {MAX_TOOLS}.", param="tools", code="too_many_tools")
    specs: list[ToolSpec] = []
    web_search = False
    hosted: set[str] = set()  # the names of hosted tools (the search), which tool_choice may name
    seen: set[str] = set()
    for i, item in enumerate(raw):
        param = f"tools.{i}"
        if not isinstance(item, dict):
            raise _type_error(param, "an object")
        kind = item.get("type")
        if isinstance(kind, str) and kind.startswith(WEB_SEARCH_PREFIX):
            web_search = True
            hosted.add(str(item.get("name") or "web_search"))
            continue
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"{param}.type {kind!r:.60} is not supported by this gateway: declare it as a custom tool "
                "with an input_schema (the hosted web search tool is supported).",
                param=f"{param}.type",
                code="unsupported_tool_type",
            )
        spec = _custom_tool(item, param)
        if spec.name in seen:
            raise InvalidRequest(f"Tool name {spec.name!r} is declared twice.", param=param, code="duplicate_tool_name")
        seen.add(spec.name)
        specs.append(spec)
    choice, parallel = _choice(body.get("tool_choice"), specs, hosted)
    if not specs:
        return AnthropicTools(web_search=web_search)
    return AnthropicTools(tools=ToolSet(tools=tuple(specs), choice=choice, parallel=parallel), web_search=web_search)


def _custom_tool(item: Mapping[str, object], param: str) -> ToolSpec:
    name, description = tool_name_and_description(item, param, pattern=_NAME_RE, longest=128)
    schema = item.get("input_schema")
    if schema is None:
        raise InvalidRequest(
            f"{param}.input_schema is required.", param=f"{param}.input_schema", code="missing_required_parameter"
        )
    if not isinstance(schema, dict):
        raise _type_error(f"{param}.input_schema", "a JSON Schema object")
    return ToolSpec(
        name=name, description=description, parameters=schema or EMPTY_SCHEMA, strict=item.get("strict") is True
    )


def _choice(raw: object, specs: list[ToolSpec], hosted: set[str]) -> tuple[ToolChoice, bool]:
    """The choice for the client's own tools. Naming the hosted search (or ``any`` with only the search
    declared) asks for a search: Kimi decides whether to search, as in its web app, so it is ``auto``."""
    if raw is None:
        return ToolChoice(), True
    if not isinstance(raw, dict) or raw.get("type") not in ("auto", "any", "tool", "none"):
        raise InvalidRequest(
            'tool_choice must be {"type": "auto" | "any" | "tool" | "none"}.', param="tool_choice", code="invalid_value"
        )
    parallel = raw.get("disable_parallel_tool_use") is not True
    kind = raw["type"]
    named = raw.get("name")
    if (kind == "tool" and isinstance(named, str) and named in hosted) or (kind == "any" and not specs and hosted):
        return ToolChoice(), parallel
    if kind in ("any", "tool") and not specs:
        raise InvalidRequest(
            "tool_choice requires tools: declare the tools it may call.", param="tool_choice", code="invalid_value"
        )
    if kind == "auto":
        return ToolChoice(), parallel
    if kind == "none":
        return ToolChoice(mode="none"), parallel
    if kind == "any":
        return ToolChoice(mode="required"), parallel
    name = raw.get("name")
    if not isinstance(name, str):
        raise _type_error("tool_choice.name", "a string")
    if not any(spec.name == name for spec in specs):
        raise InvalidRequest(
            f"tool_choice names {name!r:.70}, which is not among the declared tools.",
            param="tool_choice.name",
            code="invalid_value",
        )
    return ToolChoice(mode="named", names=(name,)), parallel


def _type_error(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}.", param=param, code="invalid_type")
