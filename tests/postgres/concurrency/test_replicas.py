"""Two gateway processes on one PostgreSQL database, 200 concurrent requests, a small pool.

Everything is real and separate: the fake Kimi server (``manage.py fake_kimi``) and two uvicorn gateway
processes, all on 127.0.0.1, against a database created for this test (``kimiproxy_replicas_<pid>``,
migrated with ``manage.py migrate``, dropped afterwards). 4 accounts x 20 turns: no account may serve one
turn more than its limit, and nothing may be left behind: no pending log row, no in-flight turn, no live
chat upstream. Requests beyond the 80 turns are answered 429.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection

from tests.integration.gateway_processes import (
    PYTHON,
    ROOT,
    ServerProcess,
    gateway_env,
    postgres_url,
    start_fake_kimi,
    start_gateway,
    wait_until,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="replicas share a PostgreSQL database"),
]
ACCOUNTS, LIMIT, REQUESTS = 4, 20, 200
SETUP = """
from accounts.services import account_create
from gateway.records.keys import api_key_create
for name, token in {tokens!r}.items():
    account_create(name=name, token=token, protocol="connect", limit={limit}, max_concurrent=3)
print("KEY", api_key_create(name="replicas")[1])
"""


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, migrated database of our own (not the pytest-django one); dropped at the end."""
    name = f"kimiproxy_replicas_{os.getpid()}"
    admin_url = postgres_url("postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = postgres_url(name)
        manage("migrate", "--no-input", env=gateway_env(database_url=url))
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql).fetchall()  # type: ignore[arg-type]


async def one_request(client: httpx.AsyncClient, url: str, index: int) -> tuple[int, str, bool]:
    stream = index % 2 == 0
    body = {"model": "kimi", "stream": stream, "messages": [{"role": "user", "content": f"request {index}"}]}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        text = (await response.aread()).decode()
    complete = "data: [DONE]" in text if stream else '"chat.completion"' in text
    return response.status_code, response.headers["x-request-id"], complete


async def send_all(urls: list[str], key: str) -> list[tuple[int, str, bool]]:
    limits = httpx.Limits(max_connections=REQUESTS + 10)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=45) as client:
        jobs = [one_request(client, urls[i % 2], i) for i in range(REQUESTS)]
        return await asyncio.wait_for(asyncio.gather(*jobs), timeout=55)


def test_it_never_exceeds_an_account_limit_and_loses_nothing_across_two_replicas(database):
    env = gateway_env(database_url=database, KIMIPROXY_QUEUE_TIMEOUT="30", KIMIPROXY_DB_POOL_MAX="10")
    fake = start_fake_kimi(env)
    processes: list[ServerProcess] = [fake]
    control = httpx.Client(base_url=fake.url, timeout=10)
    try:
        fake.wait_ready("/_fake/stats")
        tokens = {
            f"acct-{i}": control.post("/_fake/accounts", json={"name": f"acct-{i}"}).json()["refresh_token"]
            for i in range(ACCOUNTS)
        }
        control.post(
            "/_fake/reply", json={"text": "Replicated answer, in a few chunks.", "chunk_size": 6, "delay": 0.01}
        )
        out = manage("shell", "-c", SETUP.format(tokens=tokens, limit=LIMIT), env=env)
        key = next(line.split()[1] for line in out.splitlines() if line.startswith("KEY "))
        urls = ("KIMI_BASE_URL", "KIMI_AUTH_URL", "KIMI_LEGACY_BASE_URL", "KIMI_AI_BASE_URL", "KIMI_AI_AUTH_URL")
        gateway_envs = {**env, **dict.fromkeys(urls, fake.url)}
        gateways = [start_gateway(gateway_envs, name=f"replica-{i}") for i in range(2)]
        processes += gateways
        for gateway in gateways:
            gateway.wait_ready()

        results = asyncio.run(send_all([g.url for g in gateways], key))

        statuses = Counter(status for status, _, _ in results)
        assert set(statuses) <= {200, 429}, statuses
        # Every turn the pool has is served, even with 12 slots for 200 requests: waiting requests
        # queue for busy accounts and only the exhausted pool answers 429.
        assert statuses[200] == ACCOUNTS * LIMIT, statuses
        assert all(complete for status, _, complete in results if status == 200)
        wait_until(
            lambda: not query(database, "SELECT 1 FROM gateway_requestlog WHERE outcome = 'pending'"),
            timeout=15, what="every log row to be final",
        )  # fmt: skip
        wait_until(
            lambda: not query(database, "SELECT 1 FROM gateway_conversation"), timeout=15, what="chats to be deleted"
        )
        stats = control.get("/_fake/stats").json()
        chats = control.get("/_fake/chats").json()["chats"]
    finally:
        control.close()
        for process in processes:
            process.stop()

    counted = dict(query(database, """
        SELECT a.name, count(t.id) FROM accounts_kimiaccount a
        LEFT JOIN accounts_turn t ON t.account_id = a.id AND t.status <> 'refunded' GROUP BY a.name
    """))  # fmt: skip
    assert all(turns <= LIMIT for turns in counted.values()), counted  # never one turn beyond a limit
    assert LIMIT in counted.values()  # and the limit really was reached (200 requests for 80 turns)
    assert sum(counted.values()) == statuses[200]  # each answer used exactly one turn
    assert dict(Counter(chat["account"] for chat in chats)) == {n: t for n, t in counted.items() if t}
    assert all(chat["deleted"] for chat in chats) and stats["chats_deleted"] == stats["chats_created"]
    assert not query(database, "SELECT 1 FROM accounts_turn WHERE status = 'in_flight'")
    logged = dict(query(database, "SELECT request_id, status_code FROM gateway_requestlog"))
    assert {request_id: status for status, request_id, _ in results} == logged  # one final row per request
