"""Dashboard response time with 1,000,000 request-log rows on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/dashboard_bench.py [--rows N]

Creates (or empties) the database ``kimiproxy_bench`` on that server, migrates it, seeds N rows over 30
days with ``seed_request_logs`` (which also builds the hourly rollup), then requests ``/dashboard/`` for
each range through the Django test client as a staff user and prints a table: the page (median of
``--repeat`` requests), and for comparison the three heavy chart queries answered from raw rows only.
Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "kimiproxy_bench"


def _prepare_database(server_url: str) -> None:
    import psycopg

    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ["DATABASE_URL"] = f"{base}/{BENCH_DB}"


def _ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not url.startswith("postgres"):
        sys.exit("DATABASE_URL must point at PostgreSQL")
    _prepare_database(url)
    warnings.filterwarnings("ignore", "No directory at")  # whitenoise: nothing collected for a bench
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.utils import timezone

    from gateway.dashboard import queries
    from gateway.dashboard.ranges import RANGES, range_window

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    call_command("seed_request_logs", "--rows", str(args.rows), "--days", "30", stdout=StringIO())
    print(f"seeded {args.rows:,} rows (and the rollup) in {time.perf_counter() - started:.1f} s")
    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.invalid", "bench-pw-1"))
    print(
        f"{'range':<6} {'page first':>11} {'page median':>12} "
        f"{'raw outcome':>12} {'raw latency':>12} {'raw models':>11}"
    )
    with override_settings(ROOT_URLCONF="tests.browser.urlconf", ALLOWED_HOSTS=["testserver"]):
        for key, spec in RANGES.items():
            path = f"/dashboard/?range={key}"
            first = _ms(lambda p=path: client.get(p), 1)
            page = _ms(lambda p=path: client.get(p), args.repeat)
            raw = queries.source_for(window=range_window(spec=spec, now=timezone.now()), watermark=None)
            outcome = _ms(lambda s=raw: queries.requests_by_outcome(source=s), 1)
            latency = _ms(lambda s=raw: queries.latency_percentiles(source=s), 1)
            models = _ms(lambda s=raw: queries.dimension_totals(source=s, dimension="model"), 1)
            print(f"{key:<6} {first:>9.0f}ms {page:>10.0f}ms {outcome:>10.0f}ms {latency:>10.0f}ms {models:>9.0f}ms")


if __name__ == "__main__":
    main()
