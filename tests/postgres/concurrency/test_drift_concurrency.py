"""Drift counts under concurrent final writes (gateway/records/drift.py): no count is ever lost.

PostgreSQL only (row locks; SQLite serialises writers), with threads on their own connections started
together by a barrier, and ``django_db(transaction=True)`` so each sees the others' commits.
"""

from __future__ import annotations

import pytest
from django.db import connection

from gateway.kimi.drift import DriftItem
from gateway.models import UpstreamDrift
from gateway.records.drift import DriftReport, drift_record
from tests.factories import make_account
from tests.postgres.concurrency.test_pool_concurrency import run_together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock concurrency needs PostgreSQL"),
]


def test_twenty_concurrent_writers_of_new_and_existing_keys_lose_no_count() -> None:
    account = make_account(name="alice")
    items = (
        DriftItem("frame", "telemetry", 3, ({"telemetry": "<dict:1>"},)),  # new to every writer at once
        DriftItem("field", "op:merge", 1),
    )
    report = DriftReport(account_id=account.pk, protocol="connect", items=items)

    results = run_together(20, lambda: drift_record(reports=[report]))

    assert results == [2] * 20
    assert dict(UpstreamDrift.objects.values_list("key", "count")) == {"telemetry": 60, "op:merge": 20}
    assert len(UpstreamDrift.objects.get(key="telemetry").samples) == 3
