"""The ``tools`` / ``tool_choice`` of a Responses request -> the neutral ``ToolSet`` (gateway/tools/spec.py).

Responses tools are flat (``{"type": "function", "name", "parameters"}``), unlike chat completions'.

* ``function`` and ``custom`` (freeform: one raw text, e.g. Codex's ``apply_patch``; a ``grammar``
  format is passed to the prompt as its description) are the client's tools.
* ``namespace`` groups function/custom tools (Codex sends ``multi_agent_v1``): each is offered as
  ``NAMESPACE.NAME``, and its call goes back as ``name`` + ``namespace`` (``split_name``).
* ``web_search`` (and its dated/preview spellings) is hosted: it turns Kimi's own search on for the
  turn (``ParsedTools.search``); Kimi decides whether to search. With ``external_web_access: false``
  (Codex's default ``web_search = "cached"``: no live web) it is accepted and search stays off.
* ``tool_search`` (Codex with a GPT model name; client-executed deferred tool loading) is accepted and
  not offered: every tool is already offered up front.
* Any other hosted type (``file_search``, ``computer_use_preview``, ``code_interpreter``, ...) is a
  400 naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from gateway.openai.errors import InvalidRequest
from gateway.tools.spec import (
    EMPTY_SCHEMA,
    MAX_TOOLS,
    ChoiceMode,
    ToolChoice,
    ToolSet,
    ToolSpec,
    tool_name_and_description,
)

SEARCH_TYPES = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11")
ACCEPTED_UNOFFERED = ("tool_search",)
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAMESPACE_SEPARATOR = "."


@dataclasses.dataclass(frozen=True)
class ParsedTools:
    tools: ToolSet | None  # None: no client tools
    search: bool = False  # a hosted web search tool was declared
    dropped: tuple[str, ...] = ()  # accepted tool types not offered (for the log)


def split_name(offered: str, namespaces: frozenset[str]) -> tuple[str, str | None]:
    """An offered tool name -> (name, namespace) as the client declared it."""
    head, sep, tail = offered.partition(NAMESPACE_SEPARATOR)
    if sep and head in namespaces:
        return tail, head
    return offered, None


def parse_responses_tools(body: Mapping[str, object]) -> ParsedTools:
    raw = body.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _type_error("tools", "a list of tools")
    specs: list[ToolSpec] = []
    search = False
    dropped: list[str] = []
    for i, item in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(item, dict):
            raise _type_error(param, "an object")
        kind = item.get("type", "function")
        if kind in ("function", "custom"):
            specs.append(_tool(item, param))
        elif kind == "namespace":
            specs += _namespace(item, param)
        elif kind in SEARCH_TYPES and item.get("external_web_access") is False:
            dropped.append("web_search_cached")  # no live web asked for (Codex's default): no Kimi search
        elif kind in SEARCH_TYPES:
            search = True
        elif kind in ACCEPTED_UNOFFERED:
            dropped.append(str(kind))
        else:
            raise InvalidRequest(
                f"Hosted tool type {kind!r:.40} is not supported by this gateway (supported: function, custom, "
                "namespace, web_search).",
                param=f"{param}.type",
                code="unsupported_tool_type",
            )
    if len(specs) > MAX_TOOLS:
        raise InvalidRequest(f"Too many tools: at most {MAX_TOOLS}.", param="tools", code="too_many_tools")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidRequest(
                f"Tool name {spec.name!r} is declared twice.", param="tools", code="duplicate_tool_name"
            )
        seen.add(spec.name)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _type_error("parallel_tool_calls", "a boolean")
    raw_choice = body.get("tool_choice")
    if not specs:
        if isinstance(raw_choice, dict) and raw_choice.get("type") in ("function", "custom"):
            raise InvalidRequest(
                "tool_choice names a tool, but no tools are declared.", param="tool_choice", code="invalid_value"
            )
        return ParsedTools(tools=None, search=search, dropped=tuple(dropped))
    tools = tuple(specs)
    return ParsedTools(
        tools=ToolSet(tools=tools, choice=_choice(raw_choice, tools), parallel=parallel is not False),
        search=search,
        dropped=tuple(dropped),
    )


def namespaces_of(body: Mapping[str, object]) -> frozenset[str]:
    raw = body.get("tools")
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(
        str(t["name"])
        for t in raw
        if isinstance(t, dict) and t.get("type") == "namespace" and isinstance(t.get("name"), str)
    )


def _namespace(item: Mapping[str, object], param: str) -> list[ToolSpec]:
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"{param}.name must be 1 to 64 letters, digits, underscores or dashes.",
            param=f"{param}.name",
            code="invalid_value",
        )
    inner = item.get("tools")
    if not isinstance(inner, list):
        raise _type_error(f"{param}.tools", "a list of tools")
    specs = []
    for j, tool in enumerate(inner):
        where = f"{param}.tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type", "function") not in ("function", "custom"):
            raise InvalidRequest(f"{where} must be a function or custom tool.", param=where, code="invalid_value")
        spec = _tool(tool, where)
        specs.append(dataclasses.replace(spec, name=f"{name}{NAMESPACE_SEPARATOR}{spec.name}"))
    return specs


def _tool(item: Mapping[str, object], param: str) -> ToolSpec:
    name, description = tool_name_and_description(item, param, pattern=_NAME_RE)
    if item.get("type") == "custom":
        return ToolSpec(name=name, description=description, kind="custom", grammar=_grammar(item.get("format"), param))
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _type_error(f"{param}.parameters", "a JSON Schema object")
    return ToolSpec(
        name=name, description=description, parameters=parameters or EMPTY_SCHEMA, strict=item.get("strict") is True
    )


def _grammar(fmt: object, param: str) -> str:
    if fmt is None:
        return ""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
        raise InvalidRequest(
            f'{param}.format must be {{"type": "text"}} or a grammar.', param=f"{param}.format", code="invalid_value"
        )
    if fmt["type"] == "text":
        return ""
    definition = fmt.get("definition")
    if not isinstance(definition, str):
        raise _type_error(f"{param}.format.definition", "a string")
    return f"{fmt.get('syntax', 'lark')}: {definition}"


def _choice(raw: object, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice()
    if raw in ("none", "required"):
        return ToolChoice(mode="none" if raw == "none" else "required")
    if isinstance(raw, dict):
        kind = raw.get("type")
        if kind in SEARCH_TYPES:
            return ToolChoice()  # a hosted tool: Kimi decides whether to search
        if kind in ("function", "custom"):
            return ToolChoice(mode="named", names=(_declared(raw.get("name"), raw.get("namespace"), tools),))
        if kind == "allowed_tools":
            mode = raw.get("mode")
            listed = raw.get("tools")
            if mode not in ("auto", "required") or not isinstance(listed, list):
                raise InvalidRequest(
                    "tool_choice needs a mode (auto or required) and a list of tools.",
                    param="tool_choice",
                    code="invalid_value",
                )
            names = tuple(
                _declared(t.get("name"), t.get("namespace"), tools)
                for t in listed
                if isinstance(t, dict) and t.get("type", "function") in ("function", "custom")
            )
            chosen: ChoiceMode = "required" if mode == "required" else "auto"
            return ToolChoice(mode=chosen, names=names)
    raise InvalidRequest(
        'tool_choice must be "auto", "none", "required" or {"type": "function", "name": ...}.',
        param="tool_choice",
        code="invalid_value",
    )


def _declared(name: object, namespace: object, tools: tuple[ToolSpec, ...]) -> str:
    if not isinstance(name, str):
        raise _type_error("tool_choice.name", "a string")
    full = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) and namespace else name
    if not any(t.name == full for t in tools):
        raise InvalidRequest(
            f"tool_choice names {full!r:.70}, which is not among the declared tools.",
            param="tool_choice",
            code="invalid_value",
        )
    return full


def _type_error(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}.", param=param, code="invalid_type")
