"""A loopback HTTP server that records what Claude Code and Codex send, and answers just enough.

Not a test: the tool that produced tests/fixtures/cli/*.json (see tests/cli/README.md, "Capturing").
It speaks the smallest valid Anthropic Messages and OpenAI Responses answers itself, so it needs neither
Django nor the gateway. Every request is appended to --out as one JSON line (method, path, query,
headers with secrets masked, parsed body).

    python tests/cli/capture_server.py --port 8765 --out /tmp/claude.jsonl [--tool-loop] [--no-completed]

--tool-loop: the first model request that offers a shell tool gets a call of it (`echo <marker>`), the
next one (carrying the tool's result) gets a text answer quoting it. --fail KIND: every model request gets
that failure (an HTTP error, or an `event: error` / `response.failed` stream), to see how often each CLI
retries. --thinking: Messages answers start with a `thinking` block whose signature is not Anthropic's,
Responses answers with a `reasoning` item (summary, no encrypted_content). --search: Responses text
answers come after a hosted `web_search_call` item and carry a `url_citation` annotation.
--no-completed: Responses streams end without `response.completed`, Messages streams without
`message_delta` / `message_stop` (to see what each CLI does after a bare close).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SECRET_HEADERS = {"authorization", "x-api-key", "cookie"}
MARKER = "capture-marker-4711"


def masked_headers(headers: Any) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        low = name.lower()
        out[low] = "***" if low in SECRET_HEADERS else value
    return out


class State:
    def __init__(
        self, out: str, tool_loop: bool, no_completed: bool, fail: str | None = None, thinking: bool = False
    ) -> None:
        self.out = out
        self.tool_loop = tool_loop
        self.no_completed = no_completed
        self.fail = fail
        self.thinking = thinking
        self.search = False
        self.lock = threading.Lock()
        self.seq = 0

    def record(self, entry: dict[str, Any]) -> int:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            entry["at"] = time.time()
            with open(self.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
            return self.seq


# --- Anthropic Messages -------------------------------------------------------------------------


def anthropic_events(model: str, blocks: list[dict[str, Any]], stop_reason: str) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_capture0000000000000001",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            )
            delta = {"type": "thinking_delta", "thinking": block["thinking"]}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            delta = {"type": "signature_delta", "signature": block["signature"]}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            continue
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def has_tool_result(messages: list[dict[str, Any]]) -> str | None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner = block.get("content")
                    if isinstance(inner, list):
                        inner = " ".join(b.get("text", "") for b in inner if isinstance(b, dict))
                    return str(inner)
    return None


def anthropic_reply(state: State, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    tools = [t.get("name") for t in body.get("tools") or []]
    result = has_tool_result(body.get("messages") or [])
    if state.tool_loop and "Bash" in tools and result is None:
        call = {"type": "tool_use", "id": "toolu_capture000000000000001", "name": "Bash"}
        call["input"] = {"command": f"echo {MARKER}", "description": "Print the marker"}
        return [call], "tool_use"
    if result is not None:
        return [{"type": "text", "text": f"The tool said: {result.strip()}"}], "end_turn"
    return [{"type": "text", "text": "Hello from the capture server."}], "end_turn"


# --- OpenAI Responses ---------------------------------------------------------------------------


def responses_function_output(body: dict[str, Any]) -> str | None:
    items = body.get("input")
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            return output if isinstance(output, str) else json.dumps(output)
    return None


def shell_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    def walk(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
        for tool in tools:
            if tool.get("type") == "namespace":
                found = walk(tool.get("tools") or [])
                if found:
                    return found
            if tool.get("type") == "function" and tool.get("name") in ("exec_command", "shell", "shell_command"):
                return tool
        return None

    return walk(body.get("tools") or [])


def shell_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    props = (tool.get("parameters") or {}).get("properties") or {}
    command = props.get("cmd") and "cmd" or "command"
    if (props.get(command) or {}).get("type") == "array":
        return {command: ["bash", "-lc", f"echo {MARKER}"]}
    return {command: f"echo {MARKER}"}


def responses_events(state: State, body: dict[str, Any]) -> list[dict[str, Any]]:
    rid = "resp_capture0001"
    model = body.get("model", "m")
    output = responses_function_output(body)
    tool = shell_tool(body) if state.tool_loop and output is None else None
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model, "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress"}},
    ]
    if tool is not None:
        args = json.dumps(shell_arguments(tool))
        item = {"type": "function_call", "id": "fc_capture1", "call_id": "call_capture1", "name": tool["name"]}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "arguments": "", "status": "in_progress"},
            }
        )
        events.append(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc_capture1",
                "output_index": 0,
                "delta": args,
            }
        )
        events.append(
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc_capture1",
                "output_index": 0,
                "arguments": args,
            }
        )
        done_item = {**item, "arguments": args, "status": "completed"}
    else:
        text = f"The tool said: {output.strip()}" if output is not None else "Hello from the capture server."
        item = {"type": "message", "id": "msg_capture1", "role": "assistant"}
        part = {"type": "output_text", "text": "", "annotations": []}
        common = {"item_id": "msg_capture1", "output_index": 0, "content_index": 0}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            }
        )
        events.append({"type": "response.content_part.added", **common, "part": part})
        events.append({"type": "response.output_text.delta", **common, "delta": text})
        events.append({"type": "response.output_text.done", **common, "text": text})
        events.append({"type": "response.content_part.done", **common, "part": {**part, "text": text}})
        done_item = {**item, "status": "completed", "content": [{**part, "text": text}]}
    events.append({"type": "response.output_item.done", "output_index": 0, "item": done_item})
    usage = {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 19,
    }
    outputs = [done_item]
    if state.search and tool is None:
        searched, search_item = web_search_events()
        for event in events[2:]:
            event["output_index"] += 1
            for holder in (event.get("part"), *(event.get("item", {}).get("content") or [])):
                if holder and holder.get("text"):
                    holder["annotations"] = [CITATION]
        events[2:2] = searched
        outputs.insert(0, search_item)
    if state.thinking:
        reasoning, reasoning_item = reasoning_events()
        for event in events[2:]:
            event["output_index"] += 1
        events[2:2] = reasoning
        outputs.insert(0, reasoning_item)
    if not state.no_completed:
        events.append(
            {
                "type": "response.completed",
                "response": {**base, "status": "completed", "output": outputs, "usage": usage},
            }
        )
    return events


CITATION = {
    "type": "url_citation",
    "url": "https://example.org/a",
    "title": "Example A",
    "start_index": 0,
    "end_index": 5,
}


def web_search_events() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A hosted web_search_call item, as the Responses API streams one."""
    item = {"type": "web_search_call", "id": "ws_capture1", "status": "in_progress"}
    done = {**item, "status": "completed", "action": {"type": "search", "query": "capture query"}}
    common = {"item_id": "ws_capture1", "output_index": 0}
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.web_search_call.in_progress", **common},
        {"type": "response.web_search_call.searching", **common},
        {"type": "response.web_search_call.completed", **common},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ], done


def reasoning_events() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A reasoning item with a summary and no encrypted_content (the gateway has none to give)."""
    text = "Thinking about it."
    item = {"type": "reasoning", "id": "rs_capture1", "summary": []}
    part = {"type": "summary_text", "text": ""}
    common = {"item_id": "rs_capture1", "output_index": 0, "summary_index": 0}
    done = {**item, "summary": [{"type": "summary_text", "text": text}]}
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.reasoning_summary_part.added", **common, "part": part},
        {"type": "response.reasoning_summary_text.delta", **common, "delta": text},
        {"type": "response.reasoning_summary_text.done", **common, "text": text},
        {"type": "response.reasoning_summary_part.done", **common, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ], done


# --- failures (--fail KIND) --------------------------------------------------------------------

ANTHROPIC_HTTP_FAILURES = {
    "http_429": (429, "rate_limit_error", "Rate limited."),
    "http_529": (529, "overloaded_error", "Overloaded."),
    "http_500": (500, "api_error", "Internal error."),
    "http_401": (401, "authentication_error", "Invalid API key."),
    "context_length": (400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000 maximum"),
}
RESPONSES_FAILED = {
    "stream_error": ("server_error", "The server had an error."),
    "rate_limit_stream": ("rate_limit_exceeded", "Rate limit reached. Please try again in 1.5s."),
    "context_length": ("context_length_exceeded", "Your input exceeds the context window of this model."),
    "insufficient_quota": ("insufficient_quota", "You exceeded your current quota."),
}
RESPONSES_HTTP = {
    "http_429": (429, "rate_limit_exceeded", "Rate limit reached. Please try again in 1.5s."),
    "http_500": (500, "server_error", "Internal error."),
    "http_401": (401, "invalid_api_key", "Incorrect API key provided."),
}


def responses_failed(state: State, body: dict[str, Any]) -> list[dict[str, Any]]:
    code, message = RESPONSES_FAILED[state.fail or ""]
    base = {"id": "resp_capture0001", "object": "response", "created_at": int(time.time()), "model": body.get("model")}
    return [
        {"type": "response.created", "response": {**base, "status": "in_progress", "output": []}},
        {
            "type": "response.failed",
            "response": {**base, "status": "failed", "output": [], "error": {"code": code, "message": message}},
        },
    ]


# --- HTTP ---------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw[:4000].decode("utf-8", "replace"), "_encoding": self.headers.get("content-encoding")}

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self) -> None:
        split = urlsplit(self.path)
        body = self._read_body() if self.command in ("POST", "PUT", "PATCH") else None
        self.state.record(
            {
                "method": self.command,
                "path": split.path,
                "query": parse_qs(split.query),
                "headers": masked_headers(self.headers),
                "body": body,
            }
        )
        path = split.path
        if path.endswith("/messages/count_tokens"):
            return self._json(200, {"input_tokens": 123})
        if path.endswith("/messages") and self.command == "POST" and self.state.fail in ANTHROPIC_HTTP_FAILURES:
            status, kind, message = ANTHROPIC_HTTP_FAILURES[self.state.fail]
            extra = {"retry-after": "1"} if status == 429 else {}
            return self._json(status, {"type": "error", "error": {"type": kind, "message": message}}, extra)
        if path.endswith("/messages") and self.command == "POST" and self.state.fail == "stream_error":
            start = anthropic_events((body or {}).get("model", "m"), [], "end_turn")[0]
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return self._sse([start, ("error", error)])
        if path.endswith("/responses") and self.command == "POST" and self.state.fail in RESPONSES_HTTP:
            status, code, message = RESPONSES_HTTP[self.state.fail]
            extra = {"retry-after": "1"} if status == 429 else {}
            error = {"message": message, "type": "error", "param": None, "code": code}
            return self._json(status, {"error": error}, extra)
        if path.endswith("/responses") and self.command == "POST" and self.state.fail in RESPONSES_FAILED:
            return self._sse([(e["type"], e) for e in responses_failed(self.state, body or {})])
        if path.endswith("/messages") and self.command == "POST":
            body = body or {}
            blocks, stop = anthropic_reply(self.state, body)
            if self.state.thinking:
                thought = {"type": "thinking", "thinking": "Let me think.", "signature": "sig-capture-not-anthropic"}
                blocks = [thought, *blocks]
            if body.get("stream"):
                events = anthropic_events(body.get("model", "m"), blocks, stop)
                if self.state.no_completed:
                    events = events[:-2]  # no message_delta, no message_stop: a bare close
                return self._sse(events)
            message = anthropic_events(body.get("model", "m"), blocks, stop)[0][1]["message"]
            return self._json(
                200,
                {**message, "content": blocks, "stop_reason": stop, "usage": {"input_tokens": 12, "output_tokens": 7}},
            )
        if path.endswith("/responses") and self.command == "POST":
            return self._sse([(e["type"], e) for e in responses_events(self.state, body or {})])
        if path.endswith("/models"):
            return self._json(
                200, {"object": "list", "data": [{"id": "kimi", "object": "model", "owned_by": "kimiproxy"}]}
            )
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            return None
        return self._json(404, {"error": {"type": "not_found_error", "message": f"no {path}"}})

    def _json(self, status: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str, dict]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _handle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tool-loop", action="store_true")
    parser.add_argument("--no-completed", action="store_true")
    kinds = sorted({*ANTHROPIC_HTTP_FAILURES, *RESPONSES_FAILED, *RESPONSES_HTTP, "stream_error"})
    parser.add_argument("--fail", choices=kinds)
    parser.add_argument("--thinking", action="store_true")
    parser.add_argument("--search", action="store_true")
    args = parser.parse_args()
    Handler.state = State(args.out, args.tool_loop, args.no_completed, args.fail, args.thinking)
    Handler.state.search = args.search
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
