"""``make demo``: the gateway against the fake Kimi server, with a demo account and key.

Starts the fake Kimi server (loopback only) in demo mode (it answers in character: search results with
citations for kimi-search, reasoning for kimi-thinking, a tool call when a declared tool is asked for),
points the gateway at it with its own SQLite database (``data/demo.sqlite3``; ``KIMIPROXY_DEMO_DIR``
moves it), adds an account minted by the fake and an API key, prints a curl line and how to point Claude
Code and Codex at it, then serves the gateway on http://127.0.0.1:8000 (``PORT``) until Ctrl-C or SIGTERM,
which stop everything it started. No Kimi token and no network needed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = "127.0.0.1"
PORT = int(os.environ.get("PORT", "8000"))
DEMO_BODY = {"model": "kimi", "stream": True, "messages": [{"role": "user", "content": "hello"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback URL we built
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not come up") from None
            time.sleep(0.2)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def client_commands(*, base: str, key: str) -> str:
    """How to point Claude Code (Anthropic Messages) and Codex (OpenAI Responses) at the demo."""
    return f"""Claude Code:
  ANTHROPIC_BASE_URL={base} ANTHROPIC_AUTH_TOKEN={key} claude

Codex: add to ~/.codex/config.toml (or $CODEX_HOME/config.toml)
  model = "kimi"
  model_provider = "kimiproxy"

  [model_providers.kimiproxy]
  name = "kimiproxy demo"
  base_url = "{base}/v1"
  wire_api = "responses"
  env_key = "KIMIPROXY_API_KEY"
then: KIMIPROXY_API_KEY={key} codex
"""


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 15 s (the gateway drains first: KIMIPROXY_SHUTDOWN_GRACE)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does: through the finally below


def main() -> None:
    # Without this, SIGTERM ended this process alone and left the fake and the gateway running.
    signal.signal(signal.SIGTERM, _interrupt)
    started: list[subprocess.Popen[bytes]] = []
    try:
        serve(started)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in reversed(started):
            stop(process)
    print("kimiproxy demo stopped")


def serve(started: list[subprocess.Popen[bytes]]) -> None:
    data = Path(os.environ.get("KIMIPROXY_DEMO_DIR") or ROOT / "data")
    fake_port = free_port()
    while fake_port == PORT:  # the gateway's port is not bound yet: the OS may hand it out again
        fake_port = free_port()
    fake_url = f"http://{HOST}:{fake_port}"
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{data / 'demo.sqlite3'}",
        KIMI_BASE_URL=fake_url,
        KIMI_AUTH_URL=fake_url,
        KIMI_LEGACY_BASE_URL=fake_url,
        KIMI_AI_BASE_URL=fake_url,  # the fake answers both deployments on every port
        KIMI_AI_AUTH_URL=fake_url,
    )
    data.mkdir(parents=True, exist_ok=True)
    # A fresh database each run: the fake forgets its accounts when it stops.
    for leftover in data.glob("demo.sqlite3*"):
        leftover.unlink()
    fake_command = [PY, "manage.py", "fake_kimi", "--demo", "--port", str(fake_port)]
    started.append(subprocess.Popen(fake_command, cwd=ROOT, env=env))
    wait_for(f"{fake_url}/_fake/stats")
    manage(env, "migrate", "--noinput", "-v0")
    request = urllib.request.Request(
        f"{fake_url}/_fake/accounts",
        data=json.dumps({"name": "demo"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    minted = json.load(urllib.request.urlopen(request, timeout=5))  # noqa: S310 - loopback
    manage(env, "kimi_accounts", "add", "--name", "demo", "--token", minted["refresh_token"])
    key = manage(env, "api_keys", "create", "--name", "demo").strip().splitlines()[-1]
    base = f"http://{HOST}:{PORT}"
    print(f"\nkimiproxy demo: gateway on {base}, fake Kimi on {fake_url}\n")
    print(f"API key: {key}\n")
    print(
        f"curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        f"-d '{json.dumps(DEMO_BODY)}'\n"
    )
    print(client_commands(base=base, key=key))
    print("Try the models kimi-search and kimi-thinking, or declare a tool and ask to use it. Ctrl-C stops.\n")
    sys.stdout.flush()
    uvicorn = [
        PY,
        "-m",
        "uvicorn",
        "kimiproxy.asgi:application",
        "--host",
        HOST,
        "--port",
        str(PORT),
        "--no-access-log",
    ]
    gateway = subprocess.Popen(uvicorn, cwd=ROOT, env=env)
    started.append(gateway)
    gateway.wait()


if __name__ == "__main__":
    main()
