"""The agent-shaped scenario of issue 15: what client tools cost on top of a plain request.

Three requests through kimiproxy, each against the fake answering the matching reply:

* ``plain``: the plain scenario ("hi", 50 chunks of 8 characters), as the other phases send it;
* ``large``: a 48 KB request (a system prompt and a coding-agent history) without tools, the same reply;
* ``agent``: the same 48 KB request with 12 tools declared, and a reply that calls one of them (a short
  sentence, then the call block with a 1 KB string argument, in 50 chunks).

For each: non-stream latency p50 at concurrency 1 minus the fake's own (``direct``, same reply), and
the kimiproxy workers' CPU per request over sequential non-stream requests (from /proc). ``agent`` minus
``large`` is what the tools cost (prompt building, parsing the answer, the call in the body, the drain);
``large`` minus ``plain`` what the request's size costs. The target: the tools add at most 10 % of the
plain scenario's CPU per request.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

from bench import loadgen, stats
from bench.phases import CHAT_PATH, MARK, connect_body, worker_cpu
from bench.stack import CHUNKS, Stack

REQUEST_BYTES = 48 * 1024
TOOL_COUNT = 12


def _tools() -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": f"Tool number {i}: reads or writes a file of the workspace, runs a command.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Path relative to the workspace root."},
                        "content": {"type": "string", "description": "The full new content."},
                        "line": {"type": "integer"},
                    },
                    "required": ["path"],
                },
            },
        }
        for i in range(TOOL_COUNT)
    ]


def _history() -> list[dict[str, Any]]:
    """System prompt, then user/assistant turns padded with code to REQUEST_BYTES of JSON in all."""
    code = "def handler(event, context):\n    return {'status': 200, 'body': event.get('x', '') + \"<b>\"}\n"
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent. " * 40}]
    i = 0
    while len(json.dumps({"messages": messages, "tools": _tools()})) < REQUEST_BYTES:
        messages.append({"role": "user", "content": f"Step {i}: change the handler.\n```python\n{code * 6}```"})
        messages.append({"role": "assistant", "content": f"Done with step {i}; the handler now returns 200."})
        i += 1
    messages.append({"role": "user", "content": "Now write the new handler to src/handler.py."})
    return messages


def agent_reply_chunks() -> list[str]:
    """A sentence and one call, in 50 chunks each carrying the load generator's marker before the block."""
    argument = ("def handler(event, context):\n    return {'status': 200}  # a < b & \"quoted\"\n") * 14
    text = (
        'I will write the file now. Zq\n<tool_calls>\n<invoke name="tool_3">\n'
        '<parameter name="path">src/handler.py</parameter>\n'
        f'<parameter name="content">{argument}</parameter>\n</invoke>\n</tool_calls>'
    )
    size = -(-len(text) // 50)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _target(stack: Stack, body: dict[str, Any]) -> loadgen.Target:
    headers = {"content-type": "application/json", "authorization": f"Bearer {stack.api_key}"}
    path, data = "/v1/chat/completions", json.dumps(body).encode()
    raw = loadgen.build_request(host="127.0.0.1", port=stack.proxy_port, path=path, body=data, headers=headers)
    return loadgen.Target("127.0.0.1", stack.proxy_port, raw, MARK)


def _direct(stack: Stack) -> loadgen.Target:
    headers = {
        "content-type": "application/connect+json",
        "connect-protocol-version": "1",
        "authorization": f"Bearer {stack.access_token}",
    }
    raw = loadgen.build_request(
        host="127.0.0.1", port=stack.fake_port, path=CHAT_PATH, body=connect_body(), headers=headers
    )
    return loadgen.Target("127.0.0.1", stack.fake_port, raw, MARK)


def _finish_reason(stack: Stack, body: dict[str, Any]) -> str:
    """One request's finish_reason (the agent's reply must come back as a call, or the figures mean nothing)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.proxy_port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {stack.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return str(json.loads(response.read())["choices"][0]["finish_reason"])


def _p50(target: loadgen.Target, seconds: float, what: str) -> float:
    run = asyncio.run(loadgen.closed_loop(target, concurrency=1, duration=seconds))
    if run.errors:
        bad = next(r for r in run.results if r not in run.ok)
        print(f"  ! {what}: {run.errors} errors (status {bad.status} {bad.error})", flush=True)
    return stats.percentile([r.latency for r in run.ok], 50)


def _cpu_per_request(stack: Stack, target: loadgen.Target, requests: int) -> float:
    before = worker_cpu(stack, "kimiproxy")
    run = asyncio.run(loadgen.closed_loop(target, concurrency=1, duration=120, limit=requests))
    time.sleep(1.0)  # the last request's final write (and the agent's drain)
    return (worker_cpu(stack, "kimiproxy") - before) / max(1, len(run.ok))


def agent_scenario(stack: Stack, *, requests: int = 200, latency_s: float = 3.0, rounds: int = 3) -> dict[str, Any]:
    """The three variants, interleaved over ``rounds`` (a busy machine drifts: compare within a round)."""
    plain = {"model": "kimi", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    large = {"model": "kimi", "messages": _history(), "stream": False}
    agent = {**large, "tools": _tools()}
    variants = {"plain": (plain, CHUNKS), "large": (large, CHUNKS), "agent": (agent, agent_reply_chunks())}
    sizes = {name: len(json.dumps(body)) for name, (body, _) in variants.items()}
    reps: dict[str, dict[str, list[float]]] = {n: {"added_ms": [], "cpu_ms": []} for n in variants}
    try:
        for _ in range(rounds):
            for name, (body, chunks) in variants.items():
                stack.fake_reply(delay=0.0, chunks=chunks)
                reason = _finish_reason(stack, body)
                if reason != ("tool_calls" if name == "agent" else "stop"):
                    raise RuntimeError(f"the {name} scenario answered with finish_reason {reason}")
                target = _target(stack, body)
                _p50(target, 1.0, f"warm-up {name}")
                direct = _p50(_direct(stack), latency_s, f"direct {name}")
                proxied = _p50(target, latency_s, f"kimiproxy {name}")
                reps[name]["added_ms"].append((proxied - direct) * 1000)
                reps[name]["cpu_ms"].append(_cpu_per_request(stack, target, requests) * 1000)
    finally:
        stack.fake_reply(delay=0.0)
    out: dict[str, Any] = {"request_bytes": sizes, "tools": TOOL_COUNT, "rounds": rounds, "requests": requests}
    for name, values in reps.items():
        out[name] = {k: stats.summary(v) for k, v in values.items()}
    tool_cpu = [a - b for a, b in zip(reps["agent"]["cpu_ms"], reps["large"]["cpu_ms"], strict=True)]
    tool_share = [t / p for t, p in zip(tool_cpu, reps["plain"]["cpu_ms"], strict=True)]
    out["tools_cpu_ms"] = stats.summary(tool_cpu)
    out["tools_share_of_plain"] = stats.summary(tool_share)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| scenario (non-stream, c=1) | request | added latency p50 | worker CPU per request |",
        "|---|---:|---:|---:|",
    ]
    for name in ("plain", "large", "agent"):
        row = result[name]
        cells = [
            f"{result['request_bytes'][name] / 1024:.1f} KB",
            stats.fmt_spread(row["added_ms"], scale=1),
            stats.fmt_spread(row["cpu_ms"], scale=1),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tools = stats.fmt_spread(result["tools_cpu_ms"], scale=1)
    share = stats.fmt_spread(result["tools_share_of_plain"], scale=100, unit="%", digits=0)
    lines.append(
        f"\nTools (agent − large, per round): {tools} CPU per request = {share} of the plain scenario's "
        f"(target ≤ 10 %); median (min–max) of {result['rounds']} interleaved rounds of {result['requests']} "
        "requests each."
    )
    return "\n".join(lines) + "\n"
