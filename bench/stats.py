"""Pure helpers for the benchmark: percentiles, repeat summaries, the highest passing rate (no I/O)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def gaps(marks: Sequence[float]) -> list[float]:
    """Differences between consecutive arrival times."""
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (min, max) of one figure measured in several repeats."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "n": len(clean)}


def next_rate(*, low: float, high: float, passed: bool, rate: float) -> tuple[float, float, float]:
    """One bisection step of the rate search: (new low, new high, next rate to try).

    ``low`` is the highest rate known to pass, ``high`` the lowest known to fail."""
    if passed:
        low = max(low, rate)
    else:
        high = min(high, rate)
    return low, high, (low + high) / 2


def fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f} ms"


def fmt_spread(s: dict[str, float], scale: float = 1000.0, unit: str = "ms", digits: int = 2) -> str:
    """``median (min–max)`` of a summary, in ``unit`` after multiplying by ``scale``."""
    if s.get("n", 0) == 0:
        return "n/a"
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    text = f"{med:.{digits}f} {unit}".strip()
    return text if s["n"] == 1 else f"{text} ({lo:.{digits}f}–{hi:.{digits}f})"
