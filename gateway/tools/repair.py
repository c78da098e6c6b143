"""What a repair turn tells the model (gateway/chat/repair.py sends it): which of its calls failed the
tool's schema, or why its JSON output was refused, and what to answer instead. Plain text, one
upstream message in the same chat, so the model sees its own answer above it.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.tools.prompt import tools_reminder
from gateway.tools.spec import ToolCall, ToolSet

MAX_PROBLEMS = 5


def calls_repair_message(calls: Sequence[ToolCall], *, tools: ToolSet, nonce: str) -> str:
    """The calls of the last answer whose arguments failed their schema, and a request to call again."""
    lines = ["Your tool call did not match the tool's parameters schema:"]
    for call in calls:
        if call.problems:
            problems = "; ".join(call.problems[:MAX_PROBLEMS])
            lines.append(f"- {call.name}: {problems}")
    lines.append(
        "Write the corrected call now: the whole <tool_calls> block again, with every call of your last "
        "answer and the arguments fixed, and nothing else."
    )
    reminder = tools_reminder(tools, nonce=nonce)
    return "\n".join([*lines, *([reminder] if reminder else [])])


def json_repair_message(problem: str) -> str:
    """Why the last answer was not the JSON asked for (``problem``: the check's message)."""
    return (
        f"Your last answer was not accepted. {problem}\n"
        "Answer again with only the corrected JSON value, as the output format above asks: no explanation, "
        "no code fence."
    )
