"""Profile of kimiproxy's hot path: py-spy on one worker while non-stream requests are sent.

    .venv/bin/python bench/profile.py [--requests 600] [--concurrency 1] [--out bench/profiles]

Starts the same stack as ``make bench`` (database ``kimiproxy_perf``, the fake, gunicorn + uvicorn
workers, here just one), sends requests through kimiproxy while ``py-spy record --gil`` samples it (only time
the worker holds the GIL, i.e. its Python CPU), then writes the raw folded stacks and a Markdown
summary: the share of samples by category (database, upstream HTTP, Django...), under each function of
ours (inclusive), and the top functions by own time. Loopback only; everything it starts is stopped at
the end. Needs py-spy (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, phases  # noqa: E402
from bench.procs import Children  # noqa: E402
from bench.stack import VENV_BIN, Stack  # noqa: E402

OURS = re.compile(r"\((?:gateway|accounts|kimiproxy)/")
# Where a sample's time goes: the frame nearest the leaf that matches one of these, in this order of
# precedence per frame (our own modules last, so a library call made by our code counts as the library).
CATEGORIES = [
    ("database (psycopg, our SQL modules)", r"psycopg|db/eventloop|db/threads|_sql\.py|conversation_rec|django/db/"),
    ("decoding and translating upstream frames", r"framing\.py|events_(?:connect|legacy)|EventStream\._feed|citations"),
    ("OpenAI chunks and the JSON body", r"openai/chunks|textfilters|usage\.py|json/encoder"),
    ("upstream HTTP (aiohttp, our Kimi clients)", r"aiohttp|http_aio|kimi/(?:connect|legacy|stream|tokens)\.py"),
    # uvloop's C code (sockets, epoll, callbacks) shows as time in the root frame that runs the loop.
    ("the event loop (uvloop: sockets, callbacks)", r"uvicorn/_compat\.py|asyncio/runners\.py|asyncio/base_events"),
    ("uvicorn and Django request handling", r"uvicorn|httptools|django/|corsheaders|kimiproxy/|gateway/middleware"),
    ("our orchestration (accept, attempts, failover, finishing)", r"\((?:gateway|accounts)/"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--out", default=str(ROOT / "bench" / "profiles"))
    return parser.parse_args()


def summarize(folded: Path, *, top: int = 40) -> str:
    """Shares by category (CATEGORIES), inclusive shares of our functions and the top own-time
    functions, from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
        categories[_category(frames)] += n
    rows = ["| share | where |", "|---:|---|"]
    rows += [f"| {100 * n / total:.1f} % | {name} |" for name, n in categories.most_common()]
    rows += ["", "| inclusive | function (ours) |", "|---:|---|"]
    rows += [f"| {100 * n / total:.1f} % | `{f}` |" for f, n in inclusive.most_common() if OURS.search(f)][:top]
    rows += ["", "| own time | function (any) |", "|---:|---|"]
    rows += [f"| {100 * n / total:.1f} % | `{f}` |" for f, n in own.most_common(top)]
    return f"{total} samples (GIL held) of one worker.\n\n" + "\n".join(rows) + "\n"


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame):
                return name
    return "elsewhere (tasks, threads)"


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    log_dir.mkdir(exist_ok=True)
    children = Children(log_dir)
    stack = Stack(server_url=args.postgres.rstrip("/"), children=children)
    folded = out / "kimiproxy-worker.folded"
    try:
        stack.start_with_proxy(workers=1)  # one worker: every request is in the profile
        nonstream = phases.target(stack, "kimiproxy", stream=False)
        asyncio.run(loadgen.closed_loop(nonstream, concurrency=args.concurrency, duration=3.0))  # warm-up
        worker = stack.workers("kimiproxy")[0]
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(worker), "--gil", "--rate", "500"]
            + ["--format", "raw", "--output", str(folded), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        run = asyncio.run(
            loadgen.closed_loop(nonstream, concurrency=args.concurrency, duration=120, limit=args.requests)
        )
        spy.send_signal(subprocess.signal.SIGINT)
        spy.wait(timeout=30)
    finally:
        children.stop_all()
        stack.drop_database()
    summary = summarize(folded)
    (out / "kimiproxy-worker.md").write_text(
        f"# Profile: one kimiproxy worker, {len(run.ok)} non-stream requests at concurrency {args.concurrency}\n\n"
        f"py-spy --gil, {time.strftime('%Y-%m-%d')}; reproduce with `.venv/bin/python bench/profile.py`.\n\n" + summary
    )
    print(summary)
    print(f"profile: {folded} and {out / 'kimiproxy-worker.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
