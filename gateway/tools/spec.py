"""Client tools in no API's shape: what was declared, which call the client allows, and the calls.

Every front door parses its own request shape into these (``parse_openai_tools`` here for chat
completions; the Anthropic Messages and Responses doors add theirs beside it). The rest of the tool core
(prompt.py, parser.py) reads only these types.

    tools = parse_openai_tools(body)       # None when the request declares no tools
    tools.offered                          # what the prompt lists and the parser accepts (choice applied)

Refusals are ``InvalidRequest`` (400) naming the field OpenAI-style (``tools[1].function.name``,
``tool_choice``). Tool schemas are not checked against the JSON Schema meta-schema: clients send loose
schemas that OpenAI accepts; a schema the validator cannot use only means calls are passed on unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any, Literal

from gateway.openai.errors import InvalidRequest

ToolKind = Literal["function", "custom"]
ChoiceMode = Literal["auto", "none", "required", "named"]
Schema = Mapping[str, Any]

MAX_TOOLS = 128  # OpenAI's own limit per request
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # OpenAI allows [a-zA-Z0-9_-]; "." for namespaced MCP tools
_ID_ALPHABET = string.ascii_letters + string.digits
EMPTY_SCHEMA: Schema = {"type": "object", "properties": {}}


def new_call_id() -> str:
    """A call id as the gateway issues them: ``call_`` + 24 letters and digits (unguessable)."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def new_nonce() -> str:
    """The envelope id for one request: fresh each time, so a block copied from elsewhere has the wrong one."""
    return secrets.token_hex(6)


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """One declared tool. ``parameters`` is the JSON Schema of a function's arguments object; a
    ``custom`` (freeform) tool takes one raw text, described by ``grammar`` when the client gave one
    (``"lark: ..."`` / ``"regex: ..."``), and has no parameters schema."""

    name: str
    description: str = ""
    parameters: Schema = dataclasses.field(default_factory=lambda: EMPTY_SCHEMA)
    kind: ToolKind = "function"
    grammar: str = ""
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class ToolChoice:
    """``auto`` / ``none`` / ``required`` / ``named`` (one tool, in ``names``). ``names`` non-empty with
    ``auto`` or ``required`` is OpenAI's ``allowed_tools``: the list is restricted to them."""

    mode: ChoiceMode = "auto"
    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ToolSet:
    """The tools of one request with the client's choice applied."""

    tools: tuple[ToolSpec, ...]
    choice: ToolChoice = ToolChoice()
    parallel: bool = True

    @property
    def offered(self) -> tuple[ToolSpec, ...]:
        """What the prompt lists and the parser accepts: none for ``none``, the named or allowed ones."""
        if self.choice.mode == "none":
            return ()
        if self.choice.names:
            return tuple(t for t in self.tools if t.name in self.choice.names)
        return self.tools

    @property
    def required(self) -> bool:
        """The answer must call a tool (``required`` or a named tool)."""
        return self.choice.mode in ("required", "named") and bool(self.offered)

    def find(self, name: str) -> ToolSpec | None:
        """The offered tool called ``name``: exact, else the one whose name differs only in case, else
        without a ``functions.`` prefix (the K2 form's namespace). A near-miss spelling is not a match."""
        offered = self.offered
        for tool in offered:
            if tool.name == name:
                return tool
        bare = name[len("functions.") :] if name.startswith("functions.") else name
        folded = [t for t in offered if t.name.casefold() == bare.casefold()]
        return folded[0] if len(folded) == 1 else None


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A call, parsed from the answer or taken from the history.

    ``arguments`` is the JSON text of the arguments object for a function, the raw input for a custom
    tool. ``problems`` lists schema failures (empty: valid); such calls are still passed to the client,
    which reports the error to the model. ``index`` is the call's position in its answer.
    """

    id: str
    name: str
    arguments: str
    kind: ToolKind = "function"
    problems: tuple[str, ...] = ()
    index: int = 0


# --------------------------------------------------------------------------------------------------
# OpenAI chat completions shapes


def parse_openai_tools(body: Mapping[str, object]) -> ToolSet | None:
    """``tools`` / ``tool_choice`` / ``parallel_tool_calls`` of a chat completions body; None without tools.

    ``tool_choice`` ``auto`` or ``none`` without tools is accepted (clients send it by default);
    ``required`` or a named tool without tools is a 400.
    """
    tools = _tools(body.get("tools"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest("parallel_tool_calls must be a boolean.", param="parallel_tool_calls", code="invalid_type")
    raw_choice = body.get("tool_choice")
    if not tools:
        if raw_choice not in (None, "auto", "none"):
            raise InvalidRequest(
                "tool_choice requires tools: declare the tools it may call.", param="tool_choice", code="invalid_value"
            )
        return None
    return ToolSet(tools=tools, choice=_choice(raw_choice, tools), parallel=parallel is not False)


def parse_openai_history_calls(raw: object, *, param: str) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` (ids as the client sent them, issued by us or not)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _type_error(param, "a list")
    calls = []
    for i, item in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise _type_error(where, "an object")
        call_id = item.get("id")
        if not isinstance(call_id, str):
            raise _type_error(f"{where}.id", "a string")
        kind: ToolKind = "custom" if item.get("type") == "custom" else "function"
        inner = item.get(kind)
        if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
            raise _type_error(f"{where}.{kind}", "an object with a name")
        field = "input" if kind == "custom" else "arguments"
        value = inner.get(field, "")
        if not isinstance(value, str):  # some clients send the arguments decoded
            value = json.dumps(value, ensure_ascii=False)
        calls.append(ToolCall(id=call_id, name=inner["name"], arguments=value, kind=kind, index=i))
    return tuple(calls)


def _tools(raw: object) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _type_error("tools", "a list of tools")
    if len(raw) > MAX_TOOLS:
        raise InvalidRequest(f"Too many tools: at most {MAX_TOOLS}.", param="tools", code="too_many_tools")
    tools = [_tool(item, f"tools[{i}]") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise InvalidRequest(
                f"Tool name {tool.name!r} is declared twice.", param=f"tools[{i}]", code="duplicate_tool_name"
            )
        seen.add(tool.name)
    return tuple(tools)


def _tool(raw: object, param: str) -> ToolSpec:
    if not isinstance(raw, dict):
        raise _type_error(param, "an object")
    kind = raw.get("type", "function")
    if kind not in ("function", "custom"):
        raise InvalidRequest(
            f"{param}.type must be function or custom; got {kind!r:.40}.", param=f"{param}.type", code="invalid_value"
        )
    inner = raw.get(kind)
    if not isinstance(inner, dict):
        raise _type_error(f"{param}.{kind}", "an object")
    where = f"{param}.{kind}"
    name, description = tool_name_and_description(inner, where)
    if kind == "custom":
        return ToolSpec(name=name, description=description, kind="custom", grammar=_grammar(inner, where))
    parameters = inner.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _type_error(f"{where}.parameters", "a JSON Schema object")
    strict = inner.get("strict") is True
    return ToolSpec(name=name, description=description, parameters=parameters or EMPTY_SCHEMA, strict=strict)


def _grammar(inner: Mapping[str, object], where: str) -> str:
    fmt = inner.get("format")
    if fmt is None:
        return ""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "grammar"):
        raise InvalidRequest(
            f'{where}.format must be {{"type": "text"}} or a grammar.', param=f"{where}.format", code="invalid_value"
        )
    grammar = fmt.get("grammar")
    if fmt["type"] == "text":
        return ""
    if not isinstance(grammar, dict) or not isinstance(grammar.get("definition"), str):
        raise _type_error(f"{where}.format.grammar", "an object with a definition")
    return f"{grammar.get('syntax', 'lark')}: {grammar['definition']}"


def _choice(raw: object, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice()
    if raw in ("none", "required"):
        return ToolChoice(mode="none" if raw == "none" else "required")
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        return _allowed(raw.get("allowed_tools"), tools)
    if isinstance(raw, dict) and raw.get("type") in ("function", "custom"):
        inner = raw.get(str(raw["type"]))
        name = inner.get("name") if isinstance(inner, dict) else None
        if not isinstance(name, str):
            raise _type_error(f"tool_choice.{raw['type']}.name", "a string")
        _declared(name, tools)
        return ToolChoice(mode="named", names=(name,))
    raise InvalidRequest(
        'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
        code="invalid_value",
    )


def _allowed(raw: object, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if (
        not isinstance(raw, dict)
        or raw.get("mode") not in ("auto", "required")
        or not isinstance(raw.get("tools"), list)
    ):
        raise InvalidRequest(
            "tool_choice.allowed_tools needs a mode (auto or required) and a list of tools.",
            param="tool_choice.allowed_tools",
            code="invalid_value",
        )
    names = []
    for item in raw["tools"]:
        inner = item.get(item.get("type", "function")) if isinstance(item, dict) else None
        name = inner.get("name") if isinstance(inner, dict) else None
        if not isinstance(name, str):
            raise _type_error("tool_choice.allowed_tools.tools", "a list of tool references with names")
        _declared(name, tools)
        names.append(name)
    return ToolChoice(mode="required" if raw["mode"] == "required" else "auto", names=tuple(names))


def _declared(name: str, tools: tuple[ToolSpec, ...]) -> None:
    if not any(t.name == name for t in tools):
        raise InvalidRequest(
            f"tool_choice names {name!r:.70}, which is not among the declared tools.",
            param="tool_choice",
            code="invalid_value",
        )


def tool_name_and_description(
    item: Mapping[str, object], param: str, *, pattern: re.Pattern[str] = _NAME_RE, longest: int = 64
) -> tuple[str, str]:
    """A declared tool's ``name`` (``pattern``, at most ``longest`` characters) and ``description``,
    as every door checks them; 400s name the field."""
    name = item.get("name")
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise InvalidRequest(
            f"{param}.name must be 1 to {longest} letters, digits, underscores or dashes.",
            param=f"{param}.name",
            code="invalid_value",
        )
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise _type_error(f"{param}.description", "a string")
    return name, description


def _type_error(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"{param} must be {expected}.", param=param, code="invalid_type")
