"""The dashboard's time ranges: pure arithmetic on aware datetimes, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

HOUR = 3600


@dataclasses.dataclass(frozen=True)
class RangeSpec:
    key: str
    label: str
    span: timedelta
    step_seconds: int  # chart bucket width; a multiple of an hour lets the hourly rollup answer


RANGES: dict[str, RangeSpec] = {
    spec.key: spec
    for spec in (
        RangeSpec("3h", "Last 3 hours", timedelta(hours=3), 5 * 60),
        RangeSpec("24h", "Last 24 hours", timedelta(hours=24), HOUR),
        RangeSpec("7d", "Last 7 days", timedelta(days=7), 4 * HOUR),
        RangeSpec("30d", "Last 30 days", timedelta(days=30), 12 * HOUR),
    )
}
DEFAULT_RANGE = "24h"


@dataclasses.dataclass(frozen=True)
class Window:
    """``[since, until)`` split into buckets of ``step_seconds`` aligned to the Unix epoch."""

    since: datetime
    until: datetime
    step_seconds: int

    @property
    def bucket_starts(self) -> list[int]:
        """Epoch seconds of every bucket start, oldest first (the last one may be partial)."""
        first = int(self.since.timestamp())
        return list(range(first, int(self.until.timestamp()), self.step_seconds))

    @property
    def hourly(self) -> bool:
        return self.step_seconds % HOUR == 0


def range_spec(key: str | None) -> RangeSpec:
    """The range for a query-string value; unknown or missing values fall back to the default."""
    return RANGES.get(key or "", RANGES[DEFAULT_RANGE])


def floor_epoch(moment: datetime, step_seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_seconds, tz=UTC)


def range_window(*, spec: RangeSpec, now: datetime) -> Window:
    """The window ending at ``now`` whose first bucket is whole (so it starts a little before now - span)."""
    return Window(since=floor_epoch(now - spec.span, spec.step_seconds), until=now, step_seconds=spec.step_seconds)


def bucket_label(epoch: int, step_seconds: int) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if step_seconds < 4 * HOUR:
        return moment.strftime("%H:%M")
    return moment.strftime("%b %d %H:%M")
