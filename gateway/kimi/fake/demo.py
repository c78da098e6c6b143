"""The fake's demo mode (``make demo``, ``fake_kimi --demo``): when no reply is scripted, answer in
character for what was asked, so each feature can be seen without a Kimi account.

- a declared tool and a question that asks for one (names a tool, or says call / use / run / execute):
  a call in the tool-call contract (gateway/tools/README.md), arguments made from the question;
- tool results after the question (the second step of a tool loop): an answer that reports them;
- search on (a search model): results about the question, cited;
- thinking on (a thinking model): reasoning about the question;
- otherwise: an answer that repeats the question and says what to try next.

The fake reads the prompt as the gateway writes it (gateway/openai/flatten.py, gateway/tools/prompt.py),
as a model would; scripted replies (``fake.reply(...)``, what the tests use) always win.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from gateway.kimi.fake.script import Reply, SearchHit

LATEST_HEADING = "Latest message from user (answer this one):"  # gateway/openai/flatten.py
_TOOL_RE = re.compile(r'<tool name="([^"]+)"( type="freeform")?>(.*?)</tool>', re.DOTALL)
_PARAMETERS_RE = re.compile(r"<parameters>(.*?)</parameters>", re.DOTALL)
_NONCE_RE = re.compile(r'<tool_calls id="([^"]*)">')
_RESULT_RE = re.compile(r"<tool_result[^>]*>(.*?)</tool_result>", re.DOTALL)
_ARGUMENTS_RE = re.compile(r"<arguments>.*?</arguments>\n?", re.DOTALL)
_ASKS_FOR_A_TOOL_RE = re.compile(r"\b(call|use|run|execute|invoke|tool)\b", re.IGNORECASE)
_QUOTED_RE = re.compile(r"`([^`]+)`|\"([^\"]+)\"|“([^”]+)”")
_SHELL_NAMES = ("bash", "shell", "exec", "command", "terminal")
_TRY_NEXT = (
    "This is the fake Kimi of `make demo`: no Kimi account, no network. Try the model kimi-search for "
    "search results with citations, kimi-thinking for reasoning, or declare a tool and ask to call it."
)


def demo_reply(prompt: str, *, search: bool, thinking: bool) -> Reply:
    """The reply for ``prompt`` (the whole upstream message) with these features on."""
    question, results = _question_and_results(prompt)
    shown = _short(question)
    reasoning = _reasoning(shown, results) if thinking else None
    if results:
        text = "The tool answered:\n\n" + "\n\n".join(results)
        return Reply(text=text, thinking=reasoning)
    tools = _tools(prompt)
    if tools and (_ASKS_FOR_A_TOOL_RE.search(question) or any(_mentions(question, name) for name, _, _ in tools)):
        name, freeform, schema = _chosen_tool(question, tools)
        return Reply(text=_call_block(prompt, name, freeform, schema, question), thinking=reasoning)
    if search:
        hits = _hits(shown)
        text = f"Here is what the demo's pretend web says about “{shown}”: two made-up pages, cited below."
        return Reply(text=text, search=hits, thinking=reasoning)
    return Reply(text=f"You asked: “{shown}”.\n\n{_TRY_NEXT}", thinking=reasoning)


def _question_and_results(prompt: str) -> tuple[str, list[str]]:
    """The message to answer, and the tool results that follow it (unescaped, without the arguments)."""
    tail = prompt.rsplit(LATEST_HEADING, 1)[-1] if LATEST_HEADING in prompt else prompt.rsplit("</tool>", 1)[-1]
    tail = tail.split("\n\n(Reminder:", 1)[0]
    question = re.split(r"\n\n(?:assistant|tool)\b", tail, maxsplit=1)[0].strip()
    after = tail[tail.find(question) + len(question) :]
    results = [html.unescape(_ARGUMENTS_RE.sub("", r)).strip() for r in _RESULT_RE.findall(after)]
    return question, results


def _tools(prompt: str) -> list[tuple[str, bool, dict[str, Any]]]:
    tools = []
    for name, freeform, body in _TOOL_RE.findall(prompt.split(LATEST_HEADING, 1)[0]):
        match = _PARAMETERS_RE.search(body)
        try:
            schema = json.loads(match.group(1)) if match else {}
        except ValueError:
            schema = {}
        tools.append((html.unescape(name), bool(freeform), schema if isinstance(schema, dict) else {}))
    return tools


def _mentions(question: str, name: str) -> bool:
    spoken = re.escape(name).replace("_", "[_ ]")
    return re.search(rf"(?<![\w-]){spoken}(?![\w-])", question, re.IGNORECASE) is not None


def _chosen_tool(question: str, tools: list[tuple[str, bool, dict[str, Any]]]) -> tuple[str, bool, dict[str, Any]]:
    named = [t for t in tools if _mentions(question, t[0])]
    if named:
        return named[0]
    shells = [t for t in tools if any(s in t[0].lower() for s in _SHELL_NAMES)]
    wants_shell = re.search(r"\b(run|execute)\b", question, re.IGNORECASE)
    return shells[0] if shells and wants_shell else tools[0]


def _call_block(prompt: str, name: str, freeform: bool, schema: dict[str, Any], question: str) -> str:
    nonce = _NONCE_RE.search(prompt)
    opening = f'<tool_calls id="{nonce.group(1)}">' if nonce else "<tool_calls>"
    text = _quoted(question)
    arguments = {"input": text} if freeform else _arguments(schema, text)
    params = "".join(
        f'<parameter name="{key}">{_cdata(value) if isinstance(value, str) else json.dumps(value)}</parameter>\n'
        for key, value in arguments.items()
    )
    return f'{opening}\n<invoke name="{name}">\n{params}</invoke>\n</tool_calls>'


def _arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """A value for each required parameter (or the first one), of its type, made from ``text``."""
    raw = schema.get("properties")
    properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
    required = [k for k in schema.get("required") or [] if isinstance(k, str)] or list(properties)[:1]
    return {key: _value(key, properties.get(key) or {}, text) for key in required}


def _value(key: str, schema: Any, text: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "array":
        return ["bash", "-lc", text] if key == "command" else [text]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "object":
        return {}
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    return text


def _quoted(question: str) -> str:
    """What the question quotes (`code`, "text"), else the question itself."""
    match = _QUOTED_RE.search(question)
    return next(g for g in match.groups() if g) if match else question


def _cdata(value: str) -> str:
    if not any(ch in value for ch in "<&"):
        return value
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _reasoning(shown: str, results: list[str]) -> str:
    if results:
        return f"The tool has answered the question “{shown}”; I report what it returned."
    return (
        f"The question is “{shown}”. No model runs in the demo: the fake Kimi writes this reasoning so "
        "that a thinking model's reasoning can be seen on its way to the client."
    )


def _hits(shown: str) -> tuple[SearchHit, ...]:
    topic = shown[:60]
    return (
        SearchHit(f"{topic}: an overview (demo)", "https://example.org/demo/overview", f"All about {topic}.", "Demo"),
        SearchHit(f"{topic}: questions and answers (demo)", "https://example.org/demo/faq", "Q&A.", "Demo FAQ"),
    )


def _short(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
