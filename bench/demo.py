"""``make demo``: the gateway against the fake Kimi server, with a demo account and key.

Starts the fake Kimi server (loopback only), points the gateway at it with its own SQLite database
(``data/demo.sqlite3``), adds an account minted by the fake and an API key, prints a curl line, then
serves the gateway on http://127.0.0.1:8000 until Ctrl-C. No Kimi token and no network needed.
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


def main() -> None:
    fake_port = free_port()
    fake_url = f"http://{HOST}:{fake_port}"
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{ROOT / 'data' / 'demo.sqlite3'}",
        KIMI_BASE_URL=fake_url,
        KIMI_AUTH_URL=fake_url,
        KIMI_LEGACY_BASE_URL=fake_url,
        KIMI_AI_BASE_URL=fake_url,  # the fake answers both deployments on every port
        KIMI_AI_AUTH_URL=fake_url,
    )
    (ROOT / "data").mkdir(exist_ok=True)
    # A fresh database each run: the fake forgets its accounts when it stops.
    for leftover in (ROOT / "data").glob("demo.sqlite3*"):
        leftover.unlink()
    fake = subprocess.Popen([PY, "manage.py", "fake_kimi", "--port", str(fake_port)], cwd=ROOT, env=env)
    try:
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
        print(f"\nkimiproxy demo: gateway on http://{HOST}:{PORT}, fake Kimi on {fake_url}\n")
        print(f"API key: {key}\n")
        print(
            f"curl -N http://{HOST}:{PORT}/v1/chat/completions -H 'Authorization: Bearer {key}' "
            "-H 'Content-Type: application/json' "
            f"-d '{json.dumps(DEMO_BODY)}'\n"
        )
        gateway = subprocess.Popen(
            [PY, "-m", "uvicorn", "kimiproxy.asgi:application", "--host", HOST, "--port", str(PORT), "--no-access-log"],
            cwd=ROOT,
            env=env,
        )
        try:
            gateway.wait()
        except KeyboardInterrupt:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
