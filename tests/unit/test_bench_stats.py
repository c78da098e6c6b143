"""The benchmark's pure helpers (bench/stats.py, bench/phases.db_steps, bench/report.cpu_budget): percentiles,
summaries, counting, the CPU budget of a target rate."""

from __future__ import annotations

import math

import pytest

from bench.phases import db_steps, statement_kind
from bench.report import cpu_budget
from bench.stats import fmt_spread, gaps, next_rate, percentile, summary


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        (list(range(101)), 99, 99.0),
    ],
)
def test_it_interpolates_percentiles_between_ranks(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_it_gives_nan_for_the_percentile_of_nothing() -> None:
    assert math.isnan(percentile([], 50))


def test_it_takes_gaps_between_consecutive_marks() -> None:
    assert gaps([1.0, 1.5, 1.5, 3.0]) == [0.5, 0.0, 1.5]
    assert gaps([2.0]) == []


def test_it_summarises_repeats_as_median_and_spread_ignoring_nan() -> None:
    assert summary([3.0, 1.0, math.nan, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert summary([math.nan])["n"] == 0


def test_it_bisects_the_rate_between_the_last_pass_and_the_last_failure() -> None:
    low, high, rate = next_rate(low=0.0, high=1000.0, passed=True, rate=500.0)
    assert (low, high, rate) == (500.0, 1000.0, 750.0)
    low, high, rate = next_rate(low=low, high=high, passed=False, rate=rate)
    assert (low, high, rate) == (500.0, 750.0, 625.0)


def test_it_formats_a_summary_with_its_spread() -> None:
    assert fmt_spread({"median": 0.002, "min": 0.001, "max": 0.003, "n": 3}) == "2.00 ms (1.00–3.00)"
    assert fmt_spread({"median": 0.002, "min": 0.002, "max": 0.002, "n": 1}) == "2.00 ms"
    assert fmt_spread({"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}) == "n/a"


def _log(pid: int, sql: str, kind: str = "statement") -> str:
    return f"2026-01-01 00:00:00.000 UTC [{pid}] postgres@kimiproxy_perf LOG:  {kind}: {sql}"


def test_it_counts_transactions_and_lone_statements_per_backend() -> None:
    lines = [
        _log(1, "SELECT 1 FROM gateway_apikey", kind="execute <unnamed>"),
        _log(1, "BEGIN"),
        _log(2, "SELECT 2"),  # another connection, outside any transaction
        _log(1, "INSERT INTO gateway_requestlog VALUES (1)"),
        _log(1, "COMMIT"),
        "2026-01-01 00:00:00.000 UTC [3] postgres@test LOG:  statement: SELECT 3",  # another database
        "2026-01-01 00:00:00.000 UTC [1] postgres@kimiproxy_perf DETAIL:  parameters: $1 = 'x'",
        _log(4, "SELECT set_config('TimeZone', 'UTC', false)"),  # a new pooled connection's set-up
    ]
    assert db_steps(lines) == {"round_trips": 5, "transactions": 1, "autocommit": 2, "connection_setup": 1}


def test_it_names_statements_without_their_values() -> None:
    assert (
        statement_kind('SELECT "a"."id" FROM "accounts_kimiaccount" WHERE x = \'secret\'')
        == "SELECT accounts_kimiaccount"
    )
    assert statement_kind("BEGIN") == "BEGIN"
    assert statement_kind('UPDATE "gateway_requestlog" SET a = 1') == "UPDATE gateway_requestlog"


def test_it_says_what_a_target_rate_leaves_the_worker() -> None:
    cpu = {"kimiproxy_workers": 0.008, "postgres": 0.003, "fake": 0.004, "requests": 400}
    # 200/s on 2 cores: 10 ms per request, 7 ms of it Postgres and the fake -> 3 ms left.
    assert "10.0 ms of CPU per request" in cpu_budget(200, cpu)
    assert "use 7.0 ms" in cpu_budget(200, cpu) and "leaving 3.0 ms for the worker" in cpu_budget(200, cpu)
    # 400/s: 5 ms per request, less than Postgres and the fake need.
    assert "leaving nothing for the worker" in cpu_budget(400, cpu)
    assert cpu_budget(400, None) == ""
