"""``manage.py kimi_accounts drift``: upstream shapes not understood, as a table and as JSON lines."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.kimi.drift import DriftItem
from gateway.records.drift import DriftReport, drift_record
from tests.factories import make_account

pytestmark = pytest.mark.django_db

SAMPLE = {"op": "merge", "mask": "message.feedback", "message": {"id": "<str:36>"}}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("kimi_accounts", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def drift() -> None:
    now = timezone.now()
    alice, bob = make_account(name="alice"), make_account(name="bob", protocol="legacy")
    old = DriftReport(account_id=alice.pk, protocol="connect", items=(DriftItem("frame", "telemetry", 4),))
    drift_record(reports=[old], now=now - timedelta(days=2))
    recent = (DriftItem("field", "op:merge", 2, (SAMPLE,)), DriftItem("error", "REASON_FAKE_UNKNOWN", 1))
    drift_record(reports=[DriftReport(account_id=alice.pk, protocol="connect", items=recent)], now=now)
    legacy = DriftReport(account_id=bob.pk, protocol="legacy", items=(DriftItem("frame", "rename", 7),))
    drift_record(reports=[legacy], now=now - timedelta(hours=1))


def test_it_prints_what_was_seen_in_the_last_24_hours(drift: None) -> None:
    lines = run("drift").splitlines()

    assert lines[0].split("\t") == ["account", "protocol", "kind", "key", "count", "first_seen", "last_seen"]
    rows = [line.split("\t")[:5] for line in lines[1:]]
    assert sorted(rows) == [
        ["alice", "connect", "error", "REASON_FAKE_UNKNOWN", "1"],
        ["alice", "connect", "field", "op:merge", "2"],
        ["bob", "legacy", "frame", "rename", "7"],
    ]


def test_it_widens_narrows_and_shows_samples(drift: None) -> None:
    everything = run("drift", "--hours", "0")
    alice = run("drift", "--account", "alice", "--samples")

    assert "telemetry" in everything and "rename" in everything
    assert "rename" not in alice and "    " + json.dumps(SAMPLE) in alice.splitlines()


def test_it_prints_one_json_object_per_row(drift: None) -> None:
    rows = [json.loads(line) for line in run("drift", "--json", "--hours", "0").splitlines()]

    assert len(rows) == 4 and set(rows[0]) == {
        "account",
        "protocol",
        "kind",
        "key",
        "count",
        "first_seen",
        "last_seen",
        "samples",
    }
    merge = next(row for row in rows if row["key"] == "op:merge")
    assert merge["samples"] == [SAMPLE] and merge["count"] == 2


def test_it_says_when_there_is_nothing() -> None:
    assert run("drift") == "No upstream shapes the gateway did not understand in the last 24 h.\n"
