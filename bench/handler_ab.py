"""A/B of the API paths' ASGI handler: worker CPU and wall latency per request, alternating variants.

    .venv/bin/python bench/handler_ab.py [--variants copy,public,nocontext,stock,django]
        [--kinds nonstream,stream,models] [--rounds 40] [--requests 150] [--out FILE.json]

One uvicorn process per variant (bench/handler_variants.py, each as production runs a worker: uvloop,
httptools, the lifespan), all against one fake Kimi and one Postgres database (``--database``, dropped and
re-created; default ``kimiproxy_handler_ab``, never ``kimiproxy_perf`` or ``test``). Every round sends
``--requests`` sequential requests of each kind to each variant, in an order rotated per round, and
reads the server process's user + system CPU from /proc before and after (after the last request's
background work: log write, chat delete). On a shared machine the CPU per request moves with the load,
so variants are compared per round (neighbours in time) and the spread of those paired differences is
reported. Loopback only, bounded (rounds x variants x requests), every child killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, stack  # noqa: E402
from bench.procs import Children, cpu_seconds, free_port, wait_for_port  # noqa: E402


class AbStack(stack.Stack):
    database: str = "kimiproxy_handler_ab"

    @property
    def db_url(self) -> str:
        return f"{self.server_url}/{self.database}"

    def create_database(self) -> None:
        self.drop_database()
        self.sql(f"CREATE DATABASE {self.database}")

    def drop_database(self) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def chat_target(port: int, api_key: str, *, stream: bool) -> loadgen.Target:
    body = json.dumps({"model": "kimi", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    headers = {"content-type": "application/json", "authorization": f"Bearer {api_key}"}
    raw = loadgen.build_request(
        host="127.0.0.1", port=port, path="/v1/chat/completions", body=body.encode(), headers=headers
    )
    return loadgen.Target("127.0.0.1", port, raw, b"Zq")


def models_target(port: int, api_key: str) -> loadgen.Target:
    """DRF's synchronous /v1/models: the path where the copy hops to a thread as Django does."""
    raw = f"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {api_key}\r\n\r\n"
    return loadgen.Target("127.0.0.1", port, raw.encode())


def batch(pid: int, target: loadgen.Target, requests: int) -> tuple[float, float]:
    """CPU ms per request of ``pid`` and the median wall latency in ms over ``requests`` sequential calls."""
    before = cpu_seconds(pid)
    run = asyncio.run(loadgen.closed_loop(target, concurrency=1, duration=120, limit=requests))
    if run.errors:
        bad = next(r for r in run.results if r not in run.ok)
        raise RuntimeError(f"{run.errors} errors (e.g. status {bad.status} {bad.error})")
    time.sleep(0.5)  # the last request's background work (final write, chat delete)
    cpu = (cpu_seconds(pid) - before) / len(run.results)
    return cpu * 1000, statistics.median(r.latency for r in run.ok) * 1000


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} [{min(values):6.2f} .. {max(values):6.2f}]"


def paired(values: list[float]) -> str:
    """Mean ± standard error of per-round differences, then their interquartile range."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    sem = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+6.2f} ± {sem:4.2f} (IQR {q[0]:+.2f} .. {q[2]:+.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default=AbStack.database)
    parser.add_argument("--variants", default="copy,public")
    parser.add_argument("--kinds", default="nonstream,stream")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None, help="write the raw numbers as JSON here")
    args = parser.parse_args()
    variants, kinds = args.variants.split(","), args.kinds.split(",")
    log_dir = Path(__file__).resolve().parent / "results" / f"handler-ab-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True)
    children = Children(log_dir)
    ab = AbStack(server_url=args.postgres.rstrip("/"), children=children)
    ab.database = args.database
    data: dict[str, dict[str, list[tuple[float, float]]]] = {k: {v: [] for v in variants} for k in kinds}
    try:
        ab.create_database()
        ab.migrate()
        ab.start_fake()
        ab.fake_reply(delay=0.0)
        ab.seed()
        pids, targets = {}, {}
        for variant in variants:
            port = free_port()
            argv = [str(stack.VENV_BIN / "uvicorn"), "bench.handler_variants:application", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
            env = ab.base_env() | {"BENCH_API_HANDLER": variant}
            proc = children.start(f"proxy-{variant}", argv, env=env, cwd=stack.ROOT)
            wait_for_port(port, proc=proc)
            pids[variant] = proc.pid
            targets[variant] = {
                "nonstream": chat_target(port, ab.api_key, stream=False),
                "stream": chat_target(port, ab.api_key, stream=True),
                "models": models_target(port, ab.api_key),
            }
        for variant in variants:  # warm-up: imports, pools, caches
            for kind in kinds:
                batch(pids[variant], targets[variant][kind], 50)
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for kind in kinds:
                for variant in order:
                    data[kind][variant].append(batch(pids[variant], targets[variant][kind], args.requests))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    finally:
        children.stop_all()
        ab.drop_database()
    for kind in kinds:
        print(f"\n{kind}: median [min .. max] of {args.rounds} rounds; vs {variants[0]}: per-round differences")
        base = data[kind][variants[0]]
        for variant in variants:
            rows = data[kind][variant]
            cpu = [c - b for (c, _), (b, _) in zip(rows, base, strict=True)]
            wall = [w - b for (_, w), (_, b) in zip(rows, base, strict=True)]
            cpu_ms, wall_ms = summary([c for c, _ in rows]), summary([w for _, w in rows])
            print(f"  {variant:9} worker CPU ms/request {cpu_ms}  wall p50 ms {wall_ms}")
            if variant != variants[0]:
                print(f"  {'':9} vs {variants[0]}: CPU {paired(cpu)}  wall p50 {paired(wall)}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "data": data}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
