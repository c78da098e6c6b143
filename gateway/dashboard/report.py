"""Everything the dashboard page shows, for one time range: ``dashboard_report()``."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from accounts.capacity import PoolCapacity, pool_capacity
from gateway.choices import Outcome
from gateway.dashboard import pool_usage as pool
from gateway.dashboard import queries
from gateway.dashboard.native_share import NativeShare, native_share
from gateway.dashboard.ranges import RangeSpec, range_window
from gateway.dashboard.rollup import Dim, rollup_catch_up, rollup_watermark
from gateway.dashboard.tool_rates import ToolRate, tool_rates
from gateway.models import ApiKey
from gateway.records.drift import DriftRow, drift_seen_since

# Hours the page itself rolls up per view when nobody runs `rollup_request_logs`: keeps a view cheap.
CATCH_UP_HOURS = 48
# "Upstream shapes not understood": a fixed window, whatever the range (gateway/kimi/drift.py).
DRIFT_WINDOW = timedelta(hours=24)
DRIFT_ROWS = 50


@dataclasses.dataclass(frozen=True)
class Report:
    spec: RangeSpec
    since: datetime
    until: datetime
    rolled_until: datetime | None
    headline: dict[str, Any]
    accounts: list[pool.AccountUsage]
    charts: dict[str, Any]  # JSON for the page's script (templates/dashboard/index.html)
    drift: list[DriftRow] = dataclasses.field(default_factory=list)  # seen in the last DRIFT_WINDOW
    expiring: list[pool.TokenExpiry] = dataclasses.field(default_factory=list)  # refresh tokens about to die
    capacity: PoolCapacity | None = None  # turns free ahead (accounts/capacity.py)
    tools_by_key: list[ToolRate] = dataclasses.field(default_factory=list)  # client tool calls (tool_rates.py)
    tools_by_model: list[ToolRate] = dataclasses.field(default_factory=list)
    native: NativeShare = NativeShare(0, 0, 0)  # native multi-turn (native_share.py)

    @property
    def tool_tables(self) -> list[tuple[str, list[ToolRate]]]:
        """The tool-call rows per key and per model (none when no request of the range declared tools)."""
        tables = [("key", self.tools_by_key), ("model", self.tools_by_model)]
        return [(per, rows) for per, rows in tables if rows]


def _key_names(totals: list[tuple[str, int]]) -> list[tuple[str, int]]:
    ids = [int(value) for value, _ in totals if value.isdigit()]
    names = dict(ApiKey.objects.filter(pk__in=ids).values_list("pk", "name"))
    return [(names.get(int(v), f"key #{v}") if v.isdigit() else "pass-through", n) for v, n in totals]


def _pairs(totals: list[tuple[str, int]]) -> dict[str, list[Any]]:
    return {"labels": [label or "(none)" for label, _ in totals], "data": [n for _, n in totals]}


def dashboard_report(*, spec: RangeSpec, now: datetime) -> Report:
    rollup_catch_up(now=now, max_hours=CATCH_UP_HOURS)
    window = range_window(spec=spec, now=now)
    source = queries.source_for(window=window, watermark=rollup_watermark())
    outcomes = queries.requests_by_outcome(source=source)
    latency = queries.latency_percentiles(source=source)
    usage = pool.pool_usage(now=now)
    total = sum(sum(series) for series in outcomes.values())
    ok = sum(outcomes[Outcome.OK]) + sum(outcomes[Outcome.LOCAL])  # a local answer is an answer too
    states = pool.state_counts(usage)
    headline = {
        "requests": total,
        "success_rate": round(100 * ok / total, 1) if total else None,
        "ttft_p50": latency["overall"]["ttft_p50"],
        "accounts_active": states["active"],
        "accounts_exhausted": states["exhausted"],
        "accounts_invalid": states["invalid"],
        "leftover_conversations": pool.leftover_conversations(now=now),
    }
    charts = {
        "labels": queries.labels(window),
        "outcomes": [{"key": o.value, "label": o.label, "data": outcomes[o.value]} for o in queries.OUTCOMES],
        "latency": {k: v for k, v in latency.items() if k != "overall"},
        "errors": _pairs(queries.dimension_totals(source=source, dimension=Dim.ERROR)),
        "keys": _pairs(_key_names(queries.dimension_totals(source=source, dimension=Dim.API_KEY))),
        "models": _pairs(queries.dimension_totals(source=source, dimension=Dim.MODEL)),
        "accounts": {
            "labels": [a.name for a in usage],
            "used": [a.used for a in usage],
            "limit": [a.limit for a in usage],
        },
    }
    drift = drift_seen_since(since=now - DRIFT_WINDOW, limit=DRIFT_ROWS)
    expiring = pool.tokens_expiring(now=now)
    capacity = pool_capacity(now=now)
    by_key = tool_rates(since=window.since, until=window.until, by="api_key")
    by_model = tool_rates(since=window.since, until=window.until, by="model")
    return Report(
        spec,
        window.since,
        window.until,
        source.rolled_until,
        headline,
        usage,
        charts,
        drift,
        expiring,
        capacity,
        by_key,
        by_model,
        native_share(since=window.since, until=window.until),
    )
