"""The measurements: each function runs one bounded phase against the three targets and returns plain data.

Targets: ``direct`` (the fake's Connect chat endpoint), ``passthrough`` (bench/passthrough_app.py in front
of the fake) and ``kimiproxy`` (``/v1/chat/completions``). Direct and pass-through get the same Connect
request; kimiproxy gets the OpenAI request that produces it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import struct
import time
from pathlib import Path
from typing import Any

from bench import loadgen, stats
from bench.procs import cpu_seconds, rss_kb
from bench.stack import DB_NAME, Stack

CHAT_PATH = "/apiv2/kimi.gateway.chat.v1.ChatService/Chat"
MARK = b"Zq"
TARGETS = ("direct", "passthrough", "kimiproxy")


@dataclasses.dataclass
class Timing:
    """How long each phase runs (``--quick`` shrinks them)."""

    repeats: int = 3
    latency_s: float = 3.0
    gap_s: float = 4.0
    probe_s: float = 1.5
    probes: int = 5
    concurrencies: tuple[int, ...] = (1, 8, 32, 128)
    slow_streams: int = 500
    slow_chunks: int = 10

    @classmethod
    def quick(cls) -> Timing:
        return cls(repeats=1, latency_s=1.0, gap_s=1.5, probe_s=1.0, probes=3, concurrencies=(1, 32), slow_streams=100)


def connect_body() -> bytes:
    body = {
        "scenario": "SCENARIO_CHAT",
        "tools": [],
        "message": {
            "role": "user",
            "blocks": [{"message_id": "", "text": {"content": "hi"}}],
            "scenario": "SCENARIO_CHAT",
        },
        "options": {"thinking": False, "enable_plugin": True, "reasoning_effort": "REASONING_EFFORT_NONE"},
        "project_id": "",
    }
    raw = json.dumps(body).encode()
    return struct.pack(">BI", 0, len(raw)) + raw


def target(stack: Stack, name: str, *, stream: bool) -> loadgen.Target:
    if name == "kimiproxy":
        body = json.dumps({"model": "kimi", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        headers = {"content-type": "application/json", "authorization": f"Bearer {stack.api_key}"}
        raw = loadgen.build_request(
            host="127.0.0.1", port=stack.proxy_port, path="/v1/chat/completions", body=body.encode(), headers=headers
        )
        return loadgen.Target("127.0.0.1", stack.proxy_port, raw, MARK)
    port = stack.fake_port if name == "direct" else stack.passthrough_port
    headers = {
        "content-type": "application/connect+json",
        "connect-protocol-version": "1",
        "authorization": f"Bearer {stack.access_token}",
    }
    raw = loadgen.build_request(host="127.0.0.1", port=port, path=CHAT_PATH, body=connect_body(), headers=headers)
    return loadgen.Target("127.0.0.1", port, raw, MARK)


def _check(run: loadgen.Run, what: str) -> None:
    if run.errors:
        bad = next(r for r in run.results if r not in run.ok)
        print(f"  ! {what}: {run.errors} errors (e.g. status {bad.status} {bad.error})", flush=True)


def warm_up(stack: Stack, duration: float) -> None:
    for name in TARGETS:
        for stream in (False, True):
            run = asyncio.run(loadgen.closed_loop(target(stack, name, stream=stream), concurrency=8, duration=duration))
            _check(run, f"warm-up {name}")


def latency(stack: Stack, t: Timing) -> dict[str, Any]:
    """Concurrency 1, fake without delay: non-stream latency, stream time to first chunk."""
    out: dict[str, Any] = {}
    for name in TARGETS:
        reps: dict[str, list[float]] = {"p50": [], "p99": [], "ttfc_p50": [], "ttfc_p99": [], "busy": []}
        for _ in range(t.repeats):
            run = asyncio.run(
                loadgen.closed_loop(target(stack, name, stream=False), concurrency=1, duration=t.latency_s)
            )
            _check(run, f"latency {name}")
            lat = [r.latency for r in run.ok]
            reps["p50"].append(stats.percentile(lat, 50))
            reps["p99"].append(stats.percentile(lat, 99))
            reps["busy"].append(run.busy)
            run = asyncio.run(
                loadgen.closed_loop(target(stack, name, stream=True), concurrency=1, duration=t.latency_s)
            )
            _check(run, f"ttfc {name}")
            firsts = [r.first_mark for r in run.ok if r.first_mark is not None]
            reps["ttfc_p50"].append(stats.percentile(firsts, 50))
            reps["ttfc_p99"].append(stats.percentile(firsts, 99))
        out[name] = {k: stats.summary(v) for k, v in reps.items()}
        print(f"  latency {name}: p50 {stats.fmt_spread(out[name]['p50'])}", flush=True)
    return out


def chunk_gaps(stack: Stack, t: Timing) -> dict[str, Any]:
    """Fake with 20 ms between chunks, 4 streams at a time: the gaps between chunks at the client."""
    stack.fake_reply(delay=0.02)
    out: dict[str, Any] = {}
    try:
        for name in TARGETS:
            reps: dict[str, list[float]] = {"p50": [], "p99": [], "batched": []}
            for _ in range(t.repeats):
                run = asyncio.run(
                    loadgen.closed_loop(target(stack, name, stream=True), concurrency=4, duration=t.gap_s)
                )
                _check(run, f"gaps {name}")
                all_gaps = [g for r in run.ok for g in stats.gaps(r.marks)]
                reps["p50"].append(stats.percentile(all_gaps, 50))
                reps["p99"].append(stats.percentile(all_gaps, 99))
                # A gap under 5 ms where the upstream paced 20 ms means two chunks left together.
                reps["batched"].append(sum(1 for g in all_gaps if g < 0.005) / max(1, len(all_gaps)))
            out[name] = {k: stats.summary(v) for k, v in reps.items()}
    finally:
        stack.fake_reply(delay=0.0)
    return out


def _open(stack: Stack, name: str, rate: float, c: int, duration: float) -> loadgen.Run:
    return asyncio.run(
        loadgen.open_loop(target(stack, name, stream=False), rate=rate, concurrency=c, duration=duration)
    )


MIN_SAMPLES = 20  # fewer requests than this in a probe cannot show a p99: it counts as a failure


def _passes(run: loadgen.Run, *, base: float, bound: float) -> bool:
    lat = [r.latency for r in run.ok]
    return run.errors == 0 and len(lat) >= MIN_SAMPLES and stats.percentile(lat, 99) - base <= bound


def max_rate(stack: Stack, t: Timing, *, base: dict[str, float], bound: float = 0.05) -> dict[str, Any]:
    """Per target and concurrency: the highest open-loop rate whose p99 latency stays within ``bound`` of
    the direct unloaded p50 (``base``). Ceiling from a closed-loop run, then bisection, then repeats."""
    out: dict[str, Any] = {}
    for name in TARGETS:
        out[name] = {}
        for c in t.concurrencies:
            ceiling_run = asyncio.run(
                loadgen.closed_loop(target(stack, name, stream=False), concurrency=c, duration=t.probe_s)
            )
            ceiling = len(ceiling_run.ok) / ceiling_run.wall
            low, high, rate = 0.0, ceiling * 1.05, ceiling * 0.5
            for _ in range(t.probes):
                run = _open(stack, name, rate, c, t.probe_s)
                passed = _passes(run, base=base[name], bound=bound)
                low, high, rate = stats.next_rate(low=low, high=high, passed=passed, rate=rate)
            reps: dict[str, list[float]] = {"rate": [], "p99": [], "busy": []}
            for _attempt in range(3 if low > 0 else 0):  # at the edge noise decides: step down until most pass
                runs = [_open(stack, name, low, c, t.probe_s) for _ in range(t.repeats)]
                if sum(_passes(r, base=base[name], bound=bound) for r in runs) * 2 > len(runs):
                    break
                low *= 0.85
            for run in runs if low > 0 else []:
                # A repeat over the bound does not count: its rate is not one the gateway sustains.
                reps["rate"].append(len(run.ok) / run.wall if _passes(run, base=base[name], bound=bound) else 0.0)
                reps["p99"].append(stats.percentile([r.latency for r in run.ok], 99))
                reps["busy"].append(run.busy)
            out[name][str(c)] = {
                "closed_loop_rps": ceiling,
                "closed_loop_busy": ceiling_run.busy,
                "rate": low,
                **{k: stats.summary(v) for k, v in reps.items()},
            }
            print(f"  rate {name} c={c}: ceiling {ceiling:.0f}/s, within bound {low:.0f}/s", flush=True)
    return out


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (the bench's backends among them)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().split(" ", 2)[1] in ("(postgres)", "(postmaster)"):
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def cpu_per_request(stack: Stack, requests: int) -> dict[str, float]:
    """CPU seconds per request of each party, from /proc, over ``requests`` sequential non-stream
    requests through kimiproxy (and as many straight to the fake, for the fake's own share)."""

    def cpu() -> dict[str, float]:
        fake = stack.children.procs["fake"].pid
        return {
            "kimiproxy_workers": worker_cpu(stack, "kimiproxy"),
            "postgres": sum(cpu_seconds(p) for p in postgres_pids()),
            "fake": cpu_seconds(fake),
        }

    before = cpu()
    run = asyncio.run(
        loadgen.closed_loop(target(stack, "kimiproxy", stream=False), concurrency=1, duration=60, limit=requests)
    )
    _check(run, "cpu per request")
    time.sleep(1.0)  # the last finish task
    after = cpu()
    return {k: (after[k] - before[k]) / len(run.results) for k in before} | {"requests": len(run.results)}


def worker_rss(stack: Stack, name: str, field: str = "VmRSS") -> int:
    return sum(rss_kb(pid, field) for pid in stack.workers(name))


def worker_cpu(stack: Stack, name: str) -> float:
    return sum(cpu_seconds(pid) for pid in stack.workers(name))


def slow_streams(stack: Stack, t: Timing, name: str) -> dict[str, Any]:
    """``t.slow_streams`` streams open at once, one chunk per second: RSS per open stream, errors."""
    stack.fake_reply(delay=1.0, chunks=[f"Zq{i:02d}slow" for i in range(t.slow_chunks)])
    try:
        time.sleep(1.0)
        idle = worker_rss(stack, name)

        def sample() -> dict[str, Any]:
            rows = stack.sql(f"SELECT state, count(*) FROM pg_stat_activity WHERE datname = '{DB_NAME}' GROUP BY state")
            return {"rss_kb": worker_rss(stack, name), "db_connections": {str(s): n for s, n in rows}}

        tgt = target(stack, name, stream=True)
        run, during, open_now = asyncio.run(
            loadgen.hold_streams(tgt, count=t.slow_streams, ramp=3.0, on_all_open=sample, timeout=t.slow_chunks + 30)
        )
    finally:
        stack.fake_reply(delay=0.0)
    assert isinstance(during, dict)
    per_stream = (during["rss_kb"] - idle) / max(1, open_now)
    complete = [r for r in run.ok if len(r.marks) >= t.slow_chunks]
    print(f"  {t.slow_streams} slow streams via {name}: {open_now} open, {per_stream:.0f} KB each", flush=True)
    return {
        "streams": t.slow_streams,
        "open_at_sample": open_now,
        "idle_rss_kb": idle,
        "open_rss_kb": during["rss_kb"],
        "per_stream_kb": per_stream,
        "db_connections_while_open": during["db_connections"],
        "errors": run.errors,
        "incomplete": len(run.ok) - len(complete),
    }


_STMT = re.compile(r"@" + DB_NAME + r" LOG:  (?:statement|execute [^:]*): (.*)$")


def statements_since(log_path: Path, offset: int) -> list[str]:
    """The bench database's statements logged after ``offset`` (``log_statement = 'all'``)."""
    with log_path.open("rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    found = []
    for line in lines:
        match = _STMT.search(line)
        if match:
            found.append(match.group(1).strip())
    return found


def statement_kind(sql: str) -> str:
    """``BEGIN``, ``COMMIT``, ``SELECT <table>``, ``INSERT <table>``... (no values: they may be secrets)."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {table.group(1)}" if table and verb != "BEGIN" else verb


_STMT_PID = re.compile(r"\[(\d+)\] \S+@" + DB_NAME + r" LOG:  (?:statement|execute [^:]*): (.*)$")


# What Django and the pool run once on each new connection (time zone); counted apart.
CONNECTION_SETUP = ("SELECT set_config('TimeZone'", "SET TIME ZONE")


def db_steps(log_lines: list[str]) -> dict[str, int]:
    """Round trips and database steps in server-log lines: a step is one transaction (BEGIN..COMMIT) or
    one statement outside a transaction. Lines are grouped by backend pid, so overlapping requests on
    different connections do not mix."""
    in_tx: dict[str, bool] = {}
    counts = {"round_trips": 0, "transactions": 0, "autocommit": 0, "connection_setup": 0}
    for line in log_lines:
        match = _STMT_PID.search(line)
        if not match:
            continue
        pid, sql = match.groups()
        if sql.startswith(CONNECTION_SETUP):
            counts["connection_setup"] += 1  # once per new pooled connection, not per request
            continue
        counts["round_trips"] += 1
        verb = sql.split()[0].upper() if sql.split() else ""
        if verb == "BEGIN":
            in_tx[pid] = True
            counts["transactions"] += 1
        elif verb in ("COMMIT", "ROLLBACK"):
            in_tx[pid] = False
        elif not in_tx.get(pid):
            counts["autocommit"] += 1
    return counts


def log_lines_since(log_path: Path, offset: int) -> list[str]:
    with log_path.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace").splitlines()


def round_trips(stack: Stack, log_path: Path, requests: int) -> dict[str, Any]:
    """Restart kimiproxy with ``log_statement = 'all'`` on the bench database only, send requests one at a
    time and count, from the server log, every statement incl. BEGIN/COMMIT; upstream calls from the
    fake's counters. Last phase: logging slows the database."""
    stack.sql(f"ALTER DATABASE {DB_NAME} SET log_statement = 'all'")
    try:
        stack.restart_proxy()
        for stream in (False, True):
            asyncio.run(
                loadgen.closed_loop(target(stack, "kimiproxy", stream=stream), concurrency=1, duration=5, limit=3)
            )
        time.sleep(1.0)
        offset = log_path.stat().st_size
        asyncio.run(loadgen.closed_loop(target(stack, "kimiproxy", stream=True), concurrency=1, duration=5, limit=1))
        time.sleep(1.0)
        one = [statement_kind(s) for s in statements_since(log_path, offset)]
        before = stack.fake("GET", "stats")["calls"]
        offset = log_path.stat().st_size
        sent = 0
        for stream in (False, True):
            run = asyncio.run(
                loadgen.closed_loop(
                    target(stack, "kimiproxy", stream=stream), concurrency=1, duration=30, limit=requests
                )
            )
            _check(run, "round trips")
            sent += len(run.results)
        time.sleep(1.5)  # the finish task and the chat delete run after the answer
        steps = db_steps(log_lines_since(log_path, offset))
        after = stack.fake("GET", "stats")["calls"]
    finally:
        stack.sql(f"ALTER DATABASE {DB_NAME} RESET log_statement")
    upstream = {k: (after.get(k, 0) - before.get(k, 0)) / sent for k in set(after) | set(before)}
    return {
        "method": "server log with log_statement=all on the bench database (every BEGIN/COMMIT counted)",
        "requests": sent,
        "per_request": {k: v / sent for k, v in steps.items()},
        "one_stream_request": one,
        "upstream_calls_per_request": {k: v for k, v in upstream.items() if v},
    }
