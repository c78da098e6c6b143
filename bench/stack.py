"""The system under test: a bench database, the fake Kimi server, kimiproxy and the pass-through app.

Everything binds 127.0.0.1. The database ``kimiproxy_perf`` (not ``test``, and not ``kimiproxy_bench``,
which bench/dashboard_bench.py uses) is dropped and re-created on every run and dropped at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import Children, children_of, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DB_NAME = "kimiproxy_perf"
ACCOUNTS = 16
# 50 chunks of 8 characters; "Zq" marks each chunk in every wire format (bench/loadgen.py counts it).
CHUNKS = [f"Zq{i:02d}abcd" for i in range(50)]
TOKEN_KEY = "bXktYmVuY2gta2V5LW5vdC1hLXNlY3JldC0xMjM0NTY="  # a fixed Fernet key for a throw-away database


@dataclasses.dataclass
class Stack:
    server_url: str  # postgres://... without database
    children: Children
    fake_port: int = 0
    proxy_port: int = 0
    passthrough_port: int = 0
    api_key: str = ""
    access_token: str = ""  # one fake account's access token, for direct requests

    @property
    def db_url(self) -> str:
        return f"{self.server_url}/{DB_NAME}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIMI", "DJANGO_", "GUNICORN_"))}
        env.update(
            DATABASE_URL=self.db_url,
            DJANGO_SETTINGS_MODULE="kimiproxy.settings",
            SECRET_KEY="bench-only-secret-key-for-a-throwaway-database-0123456789",
            KIMIPROXY_TOKEN_KEY=TOKEN_KEY,
            KIMI_BASE_URL=self.fake_url,
            KIMI_AUTH_URL=self.fake_url,
            KIMI_LEGACY_BASE_URL=self.fake_url,
            KIMI_AI_BASE_URL=self.fake_url,  # the fake answers both deployments on every port
            KIMI_AI_AUTH_URL=self.fake_url,
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- database ------------------------------------------------------------------------------------

    def sql(self, statement: str, *, database: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(f"{self.server_url}/{database}", autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self) -> None:
        self.drop_database()
        self.sql(f"CREATE DATABASE {DB_NAME}")

    def drop_database(self) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    def migrate(self) -> None:
        import subprocess

        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=self.base_env(), check=True
        )

    # -- fake ----------------------------------------------------------------------------------------

    def start_fake(self) -> None:
        self.fake_port = free_port()
        argv = [sys.executable, "manage.py", "fake_kimi", "--port", str(self.fake_port)]
        proc = self.children.start("fake", argv, env=self.base_env(), cwd=ROOT)
        wait_for_port(self.fake_port, proc=proc)

    def fake(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.fake_url + "/_fake/" + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
            return json.loads(response.read())

    def fake_reply(self, *, delay: float, chunks: list[str] | None = None) -> None:
        self.fake("POST", "reply", {"chunks": chunks or CHUNKS, "delay": delay})

    def seed(self) -> None:
        """Fake accounts (long-lived access tokens), the same accounts in the pool, one API key."""
        os.environ.update(self.base_env())
        import django

        django.setup()
        from accounts.services import account_create
        from gateway.records.keys import api_key_create

        for i in range(ACCOUNTS):
            minted = self.fake("POST", "accounts", {"name": f"bench-{i}", "access_ttl": 86400})
            # Limits that never interfere: a huge turn limit and concurrency cap, the shortest window.
            account_create(
                name=f"bench-{i}", token=minted["refresh_token"], limit=10**9, window_hours=1 / 60, max_concurrent=10**6
            )
            if i == 0:
                self.access_token = minted["access_token"]
        _, self.api_key = api_key_create(name="bench")

    def start_with_proxy(self, workers: int = 2) -> None:
        """A fresh bench database, the fake (no delay), seeded accounts and key, and kimiproxy."""
        self.create_database()
        self.migrate()
        self.start_fake()
        self.fake_reply(delay=0.0)
        self.seed()
        self.start_proxy(workers=workers)

    # -- servers -------------------------------------------------------------------------------------

    def _gunicorn(self, name: str, app: str, port: int, extra_env: dict[str, str], workers: int = 2) -> None:
        env = self.base_env() | extra_env | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers)}
        argv = [str(VENV_BIN / "gunicorn"), "-c", "docker/gunicorn.conf.py", app]
        proc = self.children.start(name, argv, env=env, cwd=ROOT)
        wait_for_port(port, proc=proc)
        deadline = time.monotonic() + 20
        while len(children_of(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_proxy(self, workers: int = 2) -> None:
        self.proxy_port = self.proxy_port or free_port()
        self._gunicorn("kimiproxy", "kimiproxy.asgi:application", self.proxy_port, {}, workers=workers)

    def restart_proxy(self) -> None:
        self.children.stop("kimiproxy")
        self.start_proxy()

    def start_passthrough(self) -> None:
        self.passthrough_port = free_port()
        self._gunicorn(
            "passthrough", "bench.passthrough_app:app", self.passthrough_port, {"BENCH_UPSTREAM": self.fake_url}
        )

    def workers(self, name: str) -> list[int]:
        proc = self.children.procs.get(name)
        return children_of(proc.pid) if proc else []
