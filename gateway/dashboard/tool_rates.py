"""Client tool calls per key and per model: how often the model's attempt at a call worked.

The definition the page states: of the finished requests that declared tools and in which the model
tried to call one (a call block was seen in its answer, or the client required a call), the share
whose parse outcome is ``tool_calls`` (gateway/tools/parser.py ``ParseStats.outcome``: the client got
usable calls). The rest ended as ``tool_call_missing`` / ``tool_call_malformed`` (an error for the
client) or as ``text`` with the block dropped. Read from the log rows of the window (the hourly rollup
does not count tools), so a range longer than the log retention shows only what is left.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from django.db.models import Count, Q

from gateway.dashboard.rollup import finished_logs
from gateway.models import ApiKey

SUCCEEDED = "tool_calls"
FAILED = ("tool_call_missing", "tool_call_malformed")
ATTEMPTED = Q(tool_block_seen=True) | Q(tool_outcome__in=(SUCCEEDED, *FAILED))


@dataclasses.dataclass(frozen=True)
class ToolRate:
    label: str
    requests: int  # requests with tools declared
    attempted: int
    succeeded: int
    repaired: int  # requests that spent a repair turn

    @property
    def rate(self) -> float | None:
        """Percent of attempted calls that succeeded; None when none was attempted."""
        return round(100 * self.succeeded / self.attempted, 1) if self.attempted else None


def tool_rates(*, since: datetime, until: datetime, by: str, limit: int = 10) -> list[ToolRate]:
    """Rates grouped ``by`` "api_key" or "model", the most attempted first."""
    field = {"api_key": "api_key_id", "model": "model"}[by]
    rows = (
        finished_logs(since=since, until=until)
        .filter(tools_declared__gt=0)
        .order_by()
        .values(field)
        .annotate(
            requests=Count("pk"),
            attempted=Count("pk", filter=ATTEMPTED),
            succeeded=Count("pk", filter=Q(tool_outcome=SUCCEEDED)),
            repaired=Count("pk", filter=Q(repairs__gt=0)),
        )
    )
    rows = sorted(rows, key=lambda r: (-r["attempted"], -r["requests"], str(r[field])))[:limit]
    labels = _key_labels([r[field] for r in rows]) if by == "api_key" else {}
    return [
        ToolRate(
            label=labels.get(r[field], "") if by == "api_key" else (r[field] or "(none)"),
            requests=r["requests"],
            attempted=r["attempted"],
            succeeded=r["succeeded"],
            repaired=r["repaired"],
        )
        for r in rows
    ]


def _key_labels(ids: list[int | None]) -> dict[int | None, str]:
    names = dict(ApiKey.objects.filter(pk__in=[i for i in ids if i is not None]).values_list("pk", "name"))
    return {i: ("pass-through" if i is None else names.get(i, f"key #{i}")) for i in ids}
