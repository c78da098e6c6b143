"""Upstream drift: the counts a request's turns kept in memory (gateway/kimi/drift.py), stored once.

``drift_record`` runs in the request's finish task, after its final write, and only when a turn saw
something it did not understand: never a write per frame, and nothing at all for an ordinary request.
Counts are added with ``F()`` under a row lock, so concurrent requests never lose one; a key's row
keeps the first ``SAMPLES_PER_KEY`` redacted samples. ``drift_seen_since`` is what the dashboard and
``kimi_accounts drift`` show.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from gateway.kimi.drift import SAMPLES_PER_KEY, DriftItem
from gateway.models import UpstreamDrift


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """What one attempt (one account's session) did not understand."""

    account_id: int
    protocol: str
    items: tuple[DriftItem, ...]


def drift_record(*, reports: Sequence[DriftReport], now: datetime | None = None) -> int:
    """Add the reports' counts and first samples to their rows (created when new); returns the number
    of keys written. One transaction; rows are locked in one order, so concurrent writers cannot
    deadlock."""
    now = now or timezone.now()
    slots = sorted(
        ((r.account_id, r.protocol, item.kind, item.key), item) for r in reports for item in r.items if item.count
    )
    if not slots:
        return 0
    with transaction.atomic():
        for (account_id, protocol, kind, key), item in slots:
            _add(account_id=account_id, protocol=protocol, kind=kind, key=key, item=item, now=now)
    return len(slots)


def _add(*, account_id: int, protocol: str, kind: str, key: str, item: DriftItem, now: datetime) -> None:
    rows = UpstreamDrift.objects.filter(account_id=account_id, protocol=protocol, kind=kind, key=key)
    found = rows.select_for_update().values_list("pk", "samples").first()
    if found is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent first writer wins the insert
                UpstreamDrift.objects.create(
                    account_id=account_id,
                    protocol=protocol,
                    kind=kind,
                    key=key,
                    count=item.count,
                    first_seen=now,
                    last_seen=now,
                    samples=list(item.samples[:SAMPLES_PER_KEY]),
                )
            return
        except IntegrityError:
            found = rows.select_for_update().values_list("pk", "samples").get()
    pk, samples = found
    fields: dict[str, Any] = {"count": F("count") + item.count, "last_seen": now}
    if item.samples and len(samples) < SAMPLES_PER_KEY:
        fields["samples"] = [*samples, *item.samples][:SAMPLES_PER_KEY]
    UpstreamDrift.objects.filter(pk=pk).update(**fields)


@dataclasses.dataclass(frozen=True)
class DriftRow:
    account: str
    protocol: str
    kind: str
    key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    samples: list[Any]

    @property
    def samples_text(self) -> str:
        """The samples as indented JSON, for the dashboard."""
        return json.dumps(self.samples, ensure_ascii=False, indent=1)

    def as_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


def drift_seen_since(*, since: datetime | None, account: str | None = None, limit: int = 200) -> list[DriftRow]:
    """Drift rows last seen after ``since`` (None: all), most recent first."""
    rows = UpstreamDrift.objects.all()
    if since is not None:
        rows = rows.filter(last_seen__gte=since)
    if account is not None:
        rows = rows.filter(account__name=account)
    values = rows.order_by("-last_seen", "kind", "key").values_list(
        "account__name", "protocol", "kind", "key", "count", "first_seen", "last_seen", "samples"
    )[:limit]
    return [DriftRow(*row) for row in values]
