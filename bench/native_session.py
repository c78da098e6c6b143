"""A 20-step agent session, native multi-turn vs flattened (issue 18): upstream bytes and latency per turn.

One coding-agent session through kimiproxy's chat completions: a 48 KB opening request (the agent
scenario's system prompt and history, 12 tools), then 19 steps in which the fake calls a tool and the
client sends the result back with the whole history, as agents do, then a final answer. The same
session runs twice, with a key that has native multi-turn off (every step flattened into a new chat)
and one that has it on (every step after the first continues the chat with only the new tool result).
For each step: the prompt bytes the fake received (``/_fake/prompts``) and the request's latency.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from bench import agent, stats
from bench.stack import Stack

STEPS = 20
RESULT = "ok: wrote the file; 42 tests passed\n" * 24  # a tool result of about 1 KB


def _call(step: int) -> str:
    return (
        f'Step {step}. <tool_calls>\n<invoke name="tool_3">\n<parameter name="path">src/file_{step}.py</parameter>\n'
        f'<parameter name="content">print({step})</parameter>\n</invoke>\n</tool_calls>'
    )


def _post(stack: Stack, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.proxy_port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # loopback only
        answer = json.loads(response.read())
    return answer, time.perf_counter() - started


def _prompt_bytes(stack: Stack) -> list[int]:
    return [len(p.encode()) for p in stack.fake("GET", "prompts")["prompts"]]


def session(stack: Stack, key: str, *, steps: int = STEPS) -> dict[str, list[float]]:
    """One session; per step the upstream prompt bytes and the latency in ms."""
    messages = agent._history()
    tools = agent._tools()
    sent: list[float] = []
    latency: list[float] = []
    for step in range(steps):
        last = step == steps - 1
        stack.fake("POST", "reply", {"text": "All files written." if last else _call(step), "times": 1})
        before = len(_prompt_bytes(stack))
        answer, seconds = _post(stack, key, {"model": "kimi", "messages": messages, "tools": tools})
        message = answer["choices"][0]["message"]
        if not last and not message.get("tool_calls"):
            raise RuntimeError(f"step {step} answered without a tool call: {message!r:.200}")
        time.sleep(0.2)  # the final write stores the state the next step continues
        sent.append(sum(_prompt_bytes(stack)[before:]))
        latency.append(seconds * 1000)
        messages = [*messages, {k: v for k, v in message.items() if k in ("role", "content", "tool_calls")}]
        for call in message.get("tool_calls") or []:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": RESULT})
    return {"upstream_bytes": sent, "latency_ms": latency}


def native_scenario(stack: Stack, *, steps: int = STEPS) -> dict[str, Any]:
    from gateway.records.keys import api_key_create  # Django is set up by stack.seed()

    _, flattened_key = api_key_create(name="bench-flattened")
    _, native_key = api_key_create(name="bench-native", native_multiturn=True)
    try:
        out: dict[str, Any] = {"steps": steps}
        for name, key in (("flattened", flattened_key), ("native", native_key)):
            run = session(stack, key, steps=steps)
            later = slice(1, None)  # the first step is flattened either way
            out[name] = {
                "total_kb": sum(run["upstream_bytes"]) / 1024,
                "first_step_kb": run["upstream_bytes"][0] / 1024,
                "later_step_kb": stats.summary([b / 1024 for b in run["upstream_bytes"][later]]),
                "later_latency_ms": stats.summary(run["latency_ms"][later]),
            }
    finally:
        stack.fake_reply(delay=0.0)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"| {result['steps']}-step agent session | upstream, whole session | first step | each later step"
        " | latency per later step (p50, min–max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("flattened", "native"):
        row = result[name]
        later = row["later_step_kb"]
        lines.append(
            f"| {name} | {row['total_kb']:.0f} KB | {row['first_step_kb']:.1f} KB | {later['median']:.1f} KB"
            f" | {stats.fmt_spread(row['later_latency_ms'], scale=1)} |"
        )
    return "\n".join(lines) + "\n"
