"""The hourly rollup behind the dashboard's long ranges: services that rebuild whole hours.

Hours are rolled up only once they are ``GRACE`` old, because a log row is written when a request is
accepted and finalised when it ends; ``rollup_catch_up`` runs from the dashboard view (bounded) and
from ``manage.py rollup_request_logs``. Rows inserted later into an already rolled-up hour (an import,
``seed_request_logs``) need ``rollup_hours`` over that span, which the seed command does itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Count, F, Max, Min, QuerySet, Value
from django.db.models.expressions import Combinable
from django.db.models.fields import CharField
from django.db.models.functions import Cast, Coalesce

from gateway.choices import Outcome
from gateway.dashboard.ranges import HOUR, floor_epoch
from gateway.dashboard.sql import EpochBucket, hist_bucket
from gateway.models import LatencyRollup, RequestLog, RequestRollup

GRACE = timedelta(minutes=20)
MAX_AGE = timedelta(days=31)  # the longest dashboard range, plus a day

Dim = RequestRollup.Dimension
# dimension -> expression for its value on a RequestLog row
# Keyed by plain strings: a TextChoices member hashes and compares like its value, so callers may pass either.
_DIMENSIONS: dict[str, Combinable] = {
    Dim.OUTCOME: F("outcome"),
    Dim.ERROR: F("error_code"),
    Dim.MODEL: F("model"),
    Dim.API_KEY: Coalesce(Cast("api_key_id", CharField()), Value("")),
}


def finished_logs(*, since: datetime, until: datetime) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(created_at__gte=since, created_at__lt=until).exclude(outcome=Outcome.PENDING)


def rollup_watermark() -> datetime | None:
    """Every hour before this one is in the rollup; None when nothing is."""
    last = RequestRollup.objects.filter(dimension=Dim.TOTAL).aggregate(last=Max("hour"))["last"]
    return last + timedelta(hours=1) if last else None


def _hour(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def _request_rows(logs: QuerySet[RequestLog], hours: Iterable[datetime]) -> list[RequestRollup]:
    totals = dict.fromkeys(hours, 0)
    rows = []
    for dimension, expression in _DIMENSIONS.items():
        grouped = (
            logs.order_by()
            .annotate(h=EpochBucket("created_at", step=HOUR), v=expression)
            .values("h", "v")
            .annotate(n=Count("pk"))
        )
        for group in grouped:
            if dimension == Dim.ERROR and not group["v"]:
                continue
            if dimension == Dim.OUTCOME:
                totals[_hour(group["h"])] += group["n"]
            rows.append(
                RequestRollup(hour=_hour(group["h"]), dimension=dimension, value=group["v"], requests=group["n"])
            )
    rows += [RequestRollup(hour=hour, dimension=Dim.TOTAL, value="", requests=n) for hour, n in totals.items()]
    return rows


def _latency_rows(logs: QuerySet[RequestLog]) -> list[LatencyRollup]:
    rows = []
    for metric, field in ((LatencyRollup.Metric.TTFT, "ttft_ms"), (LatencyRollup.Metric.LATENCY, "latency_ms")):
        grouped = (
            logs.filter(outcome=Outcome.OK, **{f"{field}__isnull": False})
            .order_by()
            .annotate(h=EpochBucket("created_at", step=HOUR), b=hist_bucket(field))
            .values("h", "b")
            .annotate(n=Count("pk"))
        )
        rows += [LatencyRollup(hour=_hour(g["h"]), metric=metric, bucket=int(g["b"]), count=g["n"]) for g in grouped]
    return rows


def rollup_hours(*, start: datetime, end: datetime) -> int:
    """Rebuild the rollup of every hour in ``[start, end)`` (both floored to the hour); returns the hours.

    Delete and insert happen in one transaction; a concurrent rebuild of the same hours inserts the
    same rows, and its duplicates are ignored.
    """
    start, end = floor_epoch(start, HOUR), floor_epoch(end, HOUR)
    hours = [start + timedelta(hours=i) for i in range(int((end - start).total_seconds()) // HOUR)]
    if not hours:
        return 0
    logs = finished_logs(since=start, until=end)
    with transaction.atomic():
        RequestRollup.objects.filter(hour__gte=start, hour__lt=end).delete()
        LatencyRollup.objects.filter(hour__gte=start, hour__lt=end).delete()
        RequestRollup.objects.bulk_create(_request_rows(logs, hours), batch_size=2000, ignore_conflicts=True)
        LatencyRollup.objects.bulk_create(_latency_rows(logs), batch_size=2000, ignore_conflicts=True)
    return len(hours)


def rollup_catch_up(*, now: datetime, max_hours: int | None = None) -> int:
    """Roll up the complete hours after the watermark (at most ``max_hours`` of them); returns the hours."""
    complete_until = floor_epoch(now - GRACE, HOUR)
    start = rollup_watermark()
    if start is None:
        first = RequestLog.objects.filter(created_at__gte=now - MAX_AGE).aggregate(first=Min("created_at"))["first"]
        if first is None:
            return 0
        start = floor_epoch(first, HOUR)
    end = complete_until if max_hours is None else min(complete_until, start + timedelta(hours=max_hours))
    return rollup_hours(start=start, end=end) if start < end else 0


def rollup_rebuild(*, now: datetime) -> int:
    """Throw the rollup away and rebuild every complete hour of the last ``MAX_AGE``."""
    with transaction.atomic():
        RequestRollup.objects.all().delete()
        LatencyRollup.objects.all().delete()
    return rollup_catch_up(now=now)


__all__ = ["finished_logs", "rollup_catch_up", "rollup_hours", "rollup_rebuild", "rollup_watermark"]
