"""``seed_request_logs`` and ``rollup_request_logs`` by their documented forms."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum

from accounts.models import KimiAccount
from gateway.models import LatencyRollup, RequestLog, RequestRollup

pytestmark = pytest.mark.django_db


def test_it_seeds_rows_accounts_and_the_rollup() -> None:
    out = StringIO()
    call_command("seed_request_logs", "--rows", "600", "--days", "2", "--accounts", "5", "--seed", "7", stdout=out)
    assert RequestLog.objects.count() == 600
    assert set(RequestLog.objects.values_list("outcome", flat=True)) >= {"ok", "client_error", "upstream_error"}
    assert not RequestLog.objects.filter(outcome="ok", ttft_ms__isnull=True).exists()
    assert KimiAccount.objects.filter(name__startswith="seed-account-").count() == 5
    assert set(KimiAccount.objects.values_list("state", flat=True)) == {"active", "exhausted", "invalid"}
    rolled = RequestRollup.objects.filter(dimension="total").aggregate(n=Sum("requests"))["n"]
    assert 0 < rolled <= 600 and LatencyRollup.objects.exists()
    assert "seeded 600 request logs over 2 days" in out.getvalue()


def test_it_rolls_up_and_rebuilds_without_double_counting() -> None:
    call_command("seed_request_logs", "--rows", "200", "--days", "1", "--no-rollup", stdout=StringIO())
    assert not RequestRollup.objects.exists()
    call_command("rollup_request_logs", stdout=StringIO())
    first = RequestRollup.objects.filter(dimension="total").aggregate(n=Sum("requests"))["n"]
    out = StringIO()
    call_command("rollup_request_logs", "--rebuild", stdout=out)
    assert RequestRollup.objects.filter(dimension="total").aggregate(n=Sum("requests"))["n"] == first > 0
    assert "rolled up" in out.getvalue()
