"""The database goes away and comes back: 503 JSON while it is down, answers again after, no restart.

The test creates its own PostgreSQL cluster (initdb into a temporary folder owned by ``postgres``, run as
that user since initdb refuses root, on its own port) and stops and starts it; the machine's shared
server is never touched. The gateway is a real uvicorn process; the fake Kimi server runs in-process.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection

from tests.integration.gateway_processes import (
    PYTHON,
    ROOT,
    gateway_env,
    listening_socket,
    running,
    start_gateway,
    wait_until,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="runs with the PostgreSQL suite"),
    pytest.mark.skipif(
        os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None,
        reason="needs root, runuser and PostgreSQL 15 binaries to run a private cluster as the postgres user",
    ),
]
SETUP = """
from accounts.services import account_create
from gateway.records.keys import api_key_create
account_create(name="restart", token={token!r}, protocol="connect")
print("KEY", api_key_create(name="restart")[1])
"""


class Cluster:
    """A throw-away PostgreSQL cluster on 127.0.0.1:<port>, data in a temporary folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kimiproxy-pg-"))
        os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        sock = listening_socket()
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/kimiproxy"
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "--auth=trust", "-U", "postgres")

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(  # noqa: S603
            ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=60, cwd=self.dir
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        log = str(self.dir / "server.log")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(  # noqa: S603
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
             "immediate", "stop"], capture_output=True, timeout=30,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.start()
        with psycopg.connect(cluster.url.replace("/kimiproxy", "/postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE kimiproxy")
        yield cluster
    finally:
        cluster.remove()


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_it_answers_503_json_while_the_database_is_down_and_recovers_without_a_restart(cluster, fake_kimi):
    # A short pool timeout keeps the down phase bounded; the default (10 s) only makes it slower.
    env = gateway_env(database_url=cluster.url, kimi_url=fake_kimi.url, KIMIPROXY_DB_POOL_TIMEOUT="2")
    manage("migrate", "--no-input", env=env)
    token = fake_kimi.mint_account("restart").refresh_token
    out = manage("shell", "-c", SETUP.format(token=token), env=env)
    key = next(line.split()[1] for line in out.splitlines() if line.startswith("KEY "))
    gateway = start_gateway(env)
    body = {"model": "kimi", "messages": [{"role": "user", "content": "still there?"}]}

    def ask() -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30)

    with running(gateway):
        gateway.wait_ready()
        assert ask().status_code == 200

        cluster.stop()
        down = ask()
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)

        cluster.start()
        wait_until(lambda: ask().status_code == 200, timeout=30, what="answers after the database came back")
        after = [ask().status_code for _ in range(3)]
        assert gateway.proc.poll() is None  # the same process throughout

    assert down.status_code == 503, down.text
    assert down.headers["content-type"].startswith("application/json")
    assert down.json()["error"]["message"]
    assert ready.status_code == 503 and ready.json()["status"] == "database_unavailable"
    assert after == [200, 200, 200]
