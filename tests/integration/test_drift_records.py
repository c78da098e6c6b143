"""Storing upstream drift (gateway/records/drift.py): counts added, first samples kept, rows found again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateway.kimi.drift import SAMPLES_PER_KEY, DriftItem
from gateway.models import UpstreamDrift
from gateway.records.drift import DriftReport, drift_record, drift_seen_since
from tests.factories import make_account

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _report(account, *items: DriftItem, protocol: str = "connect") -> DriftReport:
    return DriftReport(account_id=account.pk, protocol=protocol, items=items)


def test_it_creates_a_row_then_adds_to_its_count_and_fills_its_samples() -> None:
    account = make_account(name="alice")
    item = DriftItem("frame", "telemetry", 2, ({"telemetry": "<dict:1>"},))

    drift_record(reports=[_report(account, item)], now=NOW)
    drift_record(reports=[_report(account, item), _report(account, item)], now=NOW + timedelta(minutes=5))
    drift_record(reports=[_report(account, item)], now=NOW + timedelta(hours=1))

    row = UpstreamDrift.objects.get()
    assert (row.account_id, row.protocol, row.kind, row.key, row.count) == (
        account.pk,
        "connect",
        "frame",
        "telemetry",
        8,
    )
    assert (row.first_seen, row.last_seen) == (NOW, NOW + timedelta(hours=1))
    assert row.samples == [{"telemetry": "<dict:1>"}] * SAMPLES_PER_KEY


def test_it_keeps_accounts_protocols_kinds_and_keys_apart() -> None:
    alice, bob = make_account(name="alice"), make_account(name="bob")
    drift_record(
        reports=[
            _report(alice, DriftItem("frame", "telemetry", 1), DriftItem("field", "telemetry", 1)),
            _report(alice, DriftItem("frame", "telemetry", 1), protocol="legacy"),
            _report(bob, DriftItem("frame", "telemetry", 3)),
        ],
        now=NOW,
    )

    counts = {(r.account.name, r.protocol, r.kind, r.key): r.count for r in UpstreamDrift.objects.all()}
    assert counts == {
        ("alice", "connect", "frame", "telemetry"): 1,
        ("alice", "connect", "field", "telemetry"): 1,
        ("alice", "legacy", "frame", "telemetry"): 1,
        ("bob", "connect", "frame", "telemetry"): 3,
    }


def test_its_statements_grow_with_the_keys_not_with_the_count() -> None:
    account = make_account(name="alice")
    drift_record(reports=[_report(account, DriftItem("frame", "a", 1), DriftItem("frame", "b", 1))], now=NOW)

    with CaptureQueriesContext(connection) as nothing:
        drift_record(reports=[], now=NOW)
    with CaptureQueriesContext(connection) as two_keys:
        drift_record(reports=[_report(account, DriftItem("frame", "a", 500), DriftItem("frame", "b", 9000))], now=NOW)

    assert len(nothing) == 0
    # Per key: the locked read and the update (the transaction's own statements aside).
    drift_statements = [q for q in two_keys.captured_queries if "upstreamdrift" in q["sql"]]
    assert len(drift_statements) == 4
    assert dict(UpstreamDrift.objects.values_list("key", "count")) == {"a": 501, "b": 9001}


def test_it_lists_rows_seen_since_a_time_most_recent_first() -> None:
    alice, bob = make_account(name="alice"), make_account(name="bob")
    drift_record(reports=[_report(alice, DriftItem("frame", "old", 1))], now=NOW - timedelta(days=3))
    drift_record(reports=[_report(alice, DriftItem("error", "REASON_X", 1, ({"reason": "REASON_X"},)))], now=NOW)
    drift_record(reports=[_report(bob, DriftItem("frame", "new", 1))], now=NOW + timedelta(minutes=1))

    recent = drift_seen_since(since=NOW - timedelta(hours=24))
    everything = drift_seen_since(since=None)
    alices = drift_seen_since(since=None, account="alice")

    assert [(r.account, r.key) for r in recent] == [("bob", "new"), ("alice", "REASON_X")]
    assert [r.key for r in everything] == ["new", "REASON_X", "old"]
    assert [r.key for r in alices] == ["REASON_X", "old"]
    assert recent[1].samples == [{"reason": "REASON_X"}] and recent[1].as_json()["last_seen"] == NOW.isoformat()
