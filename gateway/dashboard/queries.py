"""Chart aggregations: one database query per chart, over an index on time.

A window whose buckets are whole hours is answered from the hourly rollup up to its watermark and from
``RequestLog`` after it, in one ``UNION ALL``; shorter buckets (the 3-hour range) read ``RequestLog``
only. Percentiles come from ``percentile_cont`` on PostgreSQL, from the most recent ``SQLITE_SAMPLE``
rows in Python on SQLite, and from merged histograms wherever the rollup answers.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, F, QuerySet, Sum, Value

from gateway.choices import Outcome
from gateway.dashboard.histogram import histogram_percentile, percentile_cont
from gateway.dashboard.ranges import Window, bucket_label
from gateway.dashboard.rollup import _DIMENSIONS, Dim, finished_logs
from gateway.dashboard.sql import EpochBucket, PercentileCont, hist_bucket
from gateway.models import LatencyRollup, RequestRollup

SQLITE_SAMPLE = 50_000
OUTCOMES = [o for o in Outcome if o != Outcome.PENDING]
PERCENTILES = {"p50": 0.5, "p95": 0.95}
METRICS = {"ttft": "ttft_ms", "latency": "latency_ms"}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a window's numbers come from: the rollup for ``[since, rolled_until)``, logs after that."""

    window: Window
    rolled_until: datetime | None

    @property
    def raw_since(self) -> datetime:
        return self.rolled_until or self.window.since

    def raw_logs(self) -> QuerySet[Any]:
        return finished_logs(since=self.raw_since, until=self.window.until).order_by()

    def rollup(self, model: type[RequestRollup | LatencyRollup]) -> QuerySet[Any]:
        return model.objects.filter(hour__gte=self.window.since, hour__lt=self.rolled_until).order_by()


def source_for(*, window: Window, watermark: datetime | None) -> Source:
    if not window.hourly or watermark is None or watermark <= window.since:
        return Source(window=window, rolled_until=None)
    return Source(window=window, rolled_until=min(watermark, window.until))


def _series(window: Window, pairs: dict[int, float | None]) -> list[float | None]:
    return [pairs.get(start) for start in window.bucket_starts]


def labels(window: Window) -> list[str]:
    return [bucket_label(start, window.step_seconds) for start in window.bucket_starts]


def requests_by_outcome(*, source: Source) -> dict[str, list[int]]:
    """``{outcome: [requests per bucket]}`` for every finished outcome."""
    step = source.window.step_seconds
    query = source.raw_logs().annotate(b=EpochBucket("created_at", step=step), v=F("outcome")).values("b", "v")
    query = query.annotate(n=Count("pk"))
    if source.rolled_until:
        rolled = source.rollup(RequestRollup).filter(dimension=Dim.OUTCOME)
        rolled = rolled.annotate(b=EpochBucket("hour", step=step), v=F("value")).values("b", "v")
        query = rolled.annotate(n=Sum("requests")).union(query, all=True)
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in query:
        counts[row["v"]][row["b"]] += row["n"]
    return {o.value: [counts[o.value].get(b, 0) for b in source.window.bucket_starts] for o in OUTCOMES}


def dimension_totals(*, source: Source, dimension: str, limit: int = 10) -> list[tuple[str, int]]:
    """The ``limit`` most frequent values of a dimension (error code, model, key id), most first."""
    query = source.raw_logs().annotate(v=_DIMENSIONS[dimension]).values("v").annotate(n=Count("pk"))
    if dimension == Dim.ERROR:
        query = query.exclude(error_code="")
    if source.rolled_until:
        rolled = source.rollup(RequestRollup).filter(dimension=dimension).annotate(v=F("value")).values("v")
        query = rolled.annotate(n=Sum("requests")).union(query, all=True)
    totals: dict[str, int] = defaultdict(int)
    for row in query:
        totals[row["v"]] += row["n"]
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]


def _histograms(source: Source, *, step: int) -> dict[tuple[str, int | None], dict[int, int]]:
    """``{(metric, bucket start or None for the whole window): {histogram bucket: count}}``, one query."""
    ok = source.raw_logs().filter(outcome=Outcome.OK)
    parts = []
    for metric, field in METRICS.items():
        raw = ok.filter(**{f"{field}__isnull": False}).annotate(
            b=EpochBucket("created_at", step=step), m=Value(metric), k=hist_bucket(field)
        )
        parts.append(raw.values("b", "m", "k").annotate(n=Count("pk")))
    rolled = source.rollup(LatencyRollup).annotate(b=EpochBucket("hour", step=step), m=F("metric"), k=F("bucket"))
    query = rolled.values("b", "m", "k").annotate(n=Sum("count")).union(*parts, all=True)
    merged: dict[tuple[str, int | None], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for row in query:
        merged[(row["m"], row["b"])][int(row["k"])] += row["n"]
        merged[(row["m"], None)][int(row["k"])] += row["n"]
    return merged


def _percentiles_postgres(source: Source) -> dict[tuple[str, int | None], dict[str, float | None]]:
    aggregates = {
        f"{metric}_{name}": PercentileCont(field, fraction=fraction)
        for metric, field in METRICS.items()
        for name, fraction in PERCENTILES.items()
    }
    ok = source.raw_logs().filter(outcome=Outcome.OK)
    rows = ok.annotate(b=EpochBucket("created_at", step=source.window.step_seconds)).values("b").annotate(**aggregates)
    out: dict[tuple[str, int | None], dict[str, float | None]] = {}
    for row in rows:
        for metric in METRICS:
            out[(metric, row["b"])] = {name: row[f"{metric}_{name}"] for name in PERCENTILES}
    overall = ok.aggregate(**aggregates)
    for metric in METRICS:
        out[(metric, None)] = {name: overall[f"{metric}_{name}"] for name in PERCENTILES}
    return out


def _percentiles_sample(source: Source) -> dict[tuple[str, int | None], dict[str, float | None]]:
    step = source.window.step_seconds
    ok = source.raw_logs().filter(outcome=Outcome.OK).order_by("-created_at")
    values: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for created_at, *measures in ok.values_list("created_at", *METRICS.values())[:SQLITE_SAMPLE]:
        start = int(created_at.timestamp()) // step * step
        for metric, value in zip(METRICS, measures, strict=True):
            if value is not None:
                values[(metric, start)].append(value)
                values[(metric, None)].append(value)
    return {
        key: {name: percentile_cont(sorted(vals), fraction) for name, fraction in PERCENTILES.items()}
        for key, vals in values.items()
    }


def latency_percentiles(*, source: Source) -> dict[str, Any]:
    """``{"ttft_p50": [...per bucket], ..., "overall": {"ttft_p50": ms, ...}}`` over successful requests."""
    if source.rolled_until:
        hists = _histograms(source, step=source.window.step_seconds)
        table = {
            key: {name: histogram_percentile(counts, fraction) for name, fraction in PERCENTILES.items()}
            for key, counts in hists.items()
        }
    elif connection.vendor == "postgresql":
        table = _percentiles_postgres(source)
    else:
        table = _percentiles_sample(source)
    result: dict[str, Any] = {"overall": {}}
    for metric in METRICS:
        for name in PERCENTILES:
            per_bucket = {b: cell[name] for (m, b), cell in table.items() if m == metric and b is not None}
            result[f"{metric}_{name}"] = [_round(v) for v in _series(source.window, per_bucket)]
            result["overall"][f"{metric}_{name}"] = _round(table.get((metric, None), {}).get(name))
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
