"""Native multi-turn on the dashboard: how many requests of callers with the mode on continued their
upstream chat (``turn_path`` native) rather than being flattened into a new one, and how many prompt
bytes the continuations did not send upstream (gateway/chat/native.py). Read from the log rows of the
window, like the tool rates (the hourly rollup does not count them).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from django.db.models import Count, Q, Sum

from gateway.dashboard.rollup import finished_logs


@dataclasses.dataclass(frozen=True)
class NativeShare:
    native: int
    flattened: int
    bytes_saved: int

    @property
    def requests(self) -> int:
        return self.native + self.flattened

    @property
    def share(self) -> float | None:
        """Percent of the mode's requests served natively; None when no request used the mode."""
        return round(100 * self.native / self.requests, 1) if self.requests else None


def native_share(*, since: datetime, until: datetime) -> NativeShare:
    totals = (
        finished_logs(since=since, until=until)
        .exclude(turn_path="")
        .aggregate(
            native=Count("pk", filter=Q(turn_path="native")),
            flattened=Count("pk", filter=Q(turn_path="flattened")),
            bytes_saved=Sum("prompt_bytes_saved"),
        )
    )
    return NativeShare(totals["native"], totals["flattened"], totals["bytes_saved"] or 0)
