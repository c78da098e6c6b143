"""Log-scale latency histograms and percentiles, pure.

Buckets 0..9 hold 0..9 ms exactly; above that bucket ``10 + floor(ln(v / 10) / ln(1.05))`` spans 5 %
of its value, so a percentile read from merged histograms is within about 2.5 % of the exact one. The
same formula runs in SQL (``sql.hist_bucket``) when the hourly rollup is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

LINEAR_LIMIT = 10
GROWTH = 1.05
LOG_SCALE = 1 / math.log(GROWTH)


def bucket_of(value_ms: int) -> int:
    if value_ms < LINEAR_LIMIT:
        return max(value_ms, 0)
    return LINEAR_LIMIT + math.floor(math.log(value_ms / LINEAR_LIMIT) * LOG_SCALE)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    if bucket < LINEAR_LIMIT:
        return float(bucket), float(bucket + 1)
    low = LINEAR_LIMIT * GROWTH ** (bucket - LINEAR_LIMIT)
    return low, low * GROWTH


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: its geometric middle (exact for the linear buckets)."""
    if bucket < LINEAR_LIMIT:
        return float(bucket)
    low, high = bucket_bounds(bucket)
    return math.sqrt(low * high)


def histogram_percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The ``fraction`` quantile of a histogram ``{bucket: count}``; None when it is empty."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = fraction * (total - 1)  # the same rank percentile_cont interpolates at
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen > rank:
            return bucket_value(bucket)
    return bucket_value(max(counts))


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    if not sorted_values:
        return None
    rank = fraction * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)
