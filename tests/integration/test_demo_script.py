"""``make demo`` (bench/demo.py) as a newcomer runs it: it serves on its port, prints how to reach it
(curl, Claude Code, Codex), answers from the fake in demo mode, and Ctrl-C or SIGTERM stops everything
it started. Real processes on free loopback ports, the database in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


@pytest.fixture
def demo(tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env.update(PORT=str(port), KIMIPROXY_DEMO_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    out = (tmp_path / "out.txt").open("w+")
    process = subprocess.Popen([sys.executable, "bench/demo.py"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "out.txt").read_text()
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo did not come up"
            time.sleep(0.2)
        yield process, base, (tmp_path / "out.txt").read_text()
    finally:
        for pid in descendants(process.pid):  # whatever the test left (only on failure)
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait()
        out.close()


def test_it_prints_how_to_reach_it_and_answers_in_character(demo):
    _, base, printed = demo
    key = re.search(r"API key: (\S+)", printed).group(1)
    assert f"curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {key}'" in printed
    assert f"ANTHROPIC_BASE_URL={base} ANTHROPIC_AUTH_TOKEN={key} claude" in printed
    assert f'base_url = "{base}/v1"' in printed and 'wire_api = "responses"' in printed
    assert 'env_key = "KIMIPROXY_API_KEY"' in printed and f"KIMIPROXY_API_KEY={key} codex" in printed
    body = {"model": "kimi", "messages": [{"role": "user", "content": "hello"}]}
    answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert json.loads(answer.content)["choices"][0]["message"]["content"].startswith("You asked: “hello”")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_everything_it_started(demo, stop_signal):
    process, _, _ = demo
    started = descendants(process.pid)
    assert len(started) >= 2  # the fake and the gateway
    process.send_signal(stop_signal)
    assert process.wait(timeout=20) == 0
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if alive(pid)]
