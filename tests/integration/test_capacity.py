"""Capacity ahead (accounts/capacity.py, ``kimi_accounts capacity``) against hand-computed scenarios.
The clock is fixed (``NOW``); every account has a 3 h window and a pinned limit of 5 unless said."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.capacity import pool_capacity
from accounts.choices import AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from tests.factories import make_account

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def account(name: str, *, ago: list[timedelta], limit: int = 5, **fields: object) -> KimiAccount:
    made = make_account(name=name, limit=limit, window_hours=3, limit_mode="pinned")
    if fields:
        KimiAccount.objects.filter(pk=made.pk).update(**fields)
    for delta in ago:
        at = NOW - delta
        Turn.objects.create(account=made, started_at=at, lease_expires_at=at, status=TurnStatus.DONE)
    return made


def minutes(*values: int) -> list[timedelta]:
    return [timedelta(minutes=v) for v in values]


def test_free_turns_next_turns_and_no_dry_spell_at_a_light_rate() -> None:
    # a: 5 turns, 170, 120, 90, 30 and 10 minutes ago: full now. At +1 h the turns after 11:00 count
    #    (90, 30, 10 min ago: the one exactly 3 h old has just stopped): 2 free; at +3 h none counts: 5.
    #    Its next turn: when the oldest leaves, 170 min ago + 3 h = +10 min.
    account("a", ago=minutes(170, 120, 90, 30, 10))
    # b: exhausted until +2 h (the upstream's reset time), one turn 20 min ago: 0, 0, then 5 at +3 h.
    account("b", ago=minutes(20), state=AccountState.EXHAUSTED, cooldown_until=NOW + timedelta(hours=2))
    # c: unused: 5 free at every instant.
    account("c", ago=[])
    # d: invalid and e: disabled serve nothing, whatever their turns; a refunded turn never counts.
    account("d", ago=minutes(5), state=AccountState.INVALID)
    account("e", ago=[], state=AccountState.DISABLED)
    Turn.objects.create(
        account=KimiAccount.objects.get(name="c"), started_at=NOW, lease_expires_at=NOW, status=TurnStatus.REFUNDED
    )

    report = pool_capacity(now=NOW)

    assert report.free == (5, 7, 15)
    rows = {a.name: (a.free, a.next_turn_at) for a in report.accounts}
    assert rows == {
        "a": ((0, 2, 5), NOW + timedelta(minutes=10)),
        "b": ((0, 0, 5), NOW + timedelta(hours=2)),
        "c": ((5, 5, 5), NOW),
        "d": ((0, 0, 0), None),
        "e": ((0, 0, 0), None),
    }
    # The last hour: a's turns 30 and 10 min ago, b's 20 min ago, d's 5 min ago = 4 turns per hour. Supply
    # grows 5 -> 6 (+10 min) -> 7 (+1 h) -> 8 (+1 h 30) -> 12 (+2 h) ...; demand 4/h reaches 5 at +1 h 15,
    # when supply is already 7, then 7 at 1 h 45 (supply 8), 8 at +2 h (supply 12); it stops growing at
    # 12 (+3 h, when the first turns taken from now free again) while supply is 15: never dry.
    assert report.rate_per_hour == 4
    assert report.dry_at is None


def test_the_pool_runs_dry_at_a_heavy_rate() -> None:
    # One account, limit 10: six turns in the last hour (50, 40, 30, 20, 10, 5 minutes ago), 4 free now;
    # none frees before +2 h 10. At 6 turns per hour the 4 are gone after 40 minutes.
    account("solo", ago=minutes(50, 40, 30, 20, 10, 5), limit=10)

    report = pool_capacity(now=NOW)

    assert report.free == (4, 4, 10)  # at +3 h every one of them has left the window
    assert report.rate_per_hour == 6
    assert report.dry_at == NOW + timedelta(minutes=40)


def test_a_blocked_pool_runs_dry_at_once_and_the_command_says_so() -> None:
    make_account(name="spent", limit=5, window_hours=3, limit_mode="pinned")
    now = timezone.now()
    KimiAccount.objects.filter(name="spent").update(
        state=AccountState.EXHAUSTED, cooldown_until=now + timedelta(minutes=90, seconds=30)
    )
    spent = KimiAccount.objects.get(name="spent")
    Turn.objects.create(account=spent, started_at=now - timedelta(minutes=1), lease_expires_at=now)

    out = io.StringIO()
    call_command("kimi_accounts", "capacity", stdout=out)
    lines = out.getvalue().splitlines()

    assert lines[0] == "pool: turns free now 0, in 1 h 0, in 3 h 5"
    assert lines[1].startswith("last hour: 1 turns; at that rate the pool runs dry at ")
    assert lines[2].split("\t") == ["name", "state", "free now", "free in 1 h", "free in 3 h", "next turn"]
    cells = lines[3].split("\t")
    assert cells[:5] == ["spent", "exhausted", "0", "0", "5"] and cells[5].endswith("(in 1 h 31 min)")

    data = json.loads(_run_json())
    assert (data["free_now"], data["free_in_1h"], data["free_in_3h"], data["rate_last_hour"]) == (0, 0, 5, 1)
    assert data["accounts"][0]["name"] == "spent" and data["dry_at"] is not None


def _run_json() -> str:
    out = io.StringIO()
    call_command("kimi_accounts", "capacity", "--json", stdout=out)
    return out.getvalue()


@pytest.mark.urls("tests.browser.urlconf")
@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")  # whitenoise: no collectstatic in tests
def test_the_dashboard_shows_the_capacity_panel(admin_client) -> None:  # type: ignore[no-untyped-def]
    now = timezone.now()
    made = make_account(name="busy", limit=2, window_hours=3, limit_mode="pinned")
    for delta in (timedelta(minutes=30), timedelta(minutes=10)):
        Turn.objects.create(account=made, started_at=now - delta, lease_expires_at=now, status=TurnStatus.DONE)

    response = admin_client.get("/dashboard/")

    capacity = response.context["report"].capacity
    assert capacity.free == (0, 0, 2) and capacity.rate_per_hour == 2
    body = response.content.decode()
    panel = body[body.index('id="capacity"') : body.index('id="expiring"')]
    assert 'data-capacity="0">0<' in panel and 'data-capacity="2">2<' in panel
    assert "2 turns/h" in panel and "<td>busy</td>" in panel and "(in 2" in panel  # frees 2 h 30 from now
