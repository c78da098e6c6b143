"""The probe scheduler (``pool_probe``, accounts/probing.py) against the fake: which accounts a pass
checks, recovery without traffic, and that no probe ever sends a chat. Time is injected (``now``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.choices import AccountState
from accounts.models import KimiAccount
from accounts.probing import pool_probe_pass, probe_claim
from accounts.services import account_check_now
from gateway.kimi.fake import FakeKimi
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 600.0


def fake_account(fake: FakeKimi, name: str, **fields: Any) -> KimiAccount:
    minted = fake.mint_account(name)
    account = make_account(name=name, token=minted.refresh_token, protocol=minted.protocol)
    if fields:
        KimiAccount.objects.filter(pk=account.pk).update(**fields)
        account.refresh_from_db()
    return account


def run_pass(now: Any) -> dict[str, tuple[str, str, str]]:
    items = pool_probe_pass(interval=INTERVAL, refresh_margin=60.0, now=now)
    return {item.name: (item.reason, item.verdict, item.state_after) for item in items}


def test_a_pass_probes_only_the_accounts_it_needs_to_learn_and_sends_no_chat(fake_kimi: FakeKimi) -> None:
    now = timezone.now()
    busy = fake_account(fake_kimi, "busy")
    account_check_now(account=busy, now=now)  # a fresh access token and a recent check
    KimiAccount.objects.filter(pk=busy.pk).update(last_used_at=now)
    fake_account(fake_kimi, "idle", last_used_at=now - timedelta(hours=2))
    fake_account(fake_kimi, "cooled", state=AccountState.COOLING, cooldown_until=now - timedelta(seconds=1))
    fake_account(fake_kimi, "cooling", state=AccountState.COOLING, cooldown_until=now + timedelta(minutes=5))
    fake_account(fake_kimi, "reset", state=AccountState.EXHAUSTED, cooldown_until=now - timedelta(minutes=1))
    fake_account(fake_kimi, "spent", state=AccountState.EXHAUSTED, cooldown_until=now + timedelta(hours=1))
    fake_account(fake_kimi, "off", state=AccountState.DISABLED)
    fake_account(fake_kimi, "dead", state=AccountState.INVALID, checked_at=now - timedelta(hours=3))
    refreshes_before = fake_kimi.count("refresh")

    probed = run_pass(now)

    assert probed == {
        "idle": ("unused", "live", "active"),
        "cooled": ("cooldown over", "live", "active"),
        "reset": ("exhausted past its reset time", "live", "active"),
    }
    assert fake_kimi.count("refresh") - refreshes_before == 3
    for name in ("busy", "cooling", "spent", "off", "dead"):
        assert fake_kimi.count("refresh", name) == (1 if name == "busy" else 0)
    states = dict(KimiAccount.objects.values_list("name", "state"))
    assert (states["cooling"], states["spent"], states["off"]) == ("cooling", "exhausted", "disabled")
    assert fake_kimi.count("chat") == 0 and fake_kimi.count("create_chat") == 0

    assert run_pass(now + timedelta(seconds=30)) == {}  # nothing left to learn


def test_an_exhausted_account_comes_back_by_itself_after_its_reset_time(fake_kimi: FakeKimi) -> None:
    now = timezone.now()
    fake_account(fake_kimi, "alice", state=AccountState.EXHAUSTED, cooldown_until=now + timedelta(hours=1))

    assert run_pass(now) == {}
    assert run_pass(now + timedelta(minutes=59)) == {}
    assert run_pass(now + timedelta(minutes=61)) == {"alice": ("exhausted past its reset time", "live", "active")}

    account = KimiAccount.objects.get(name="alice")
    assert (account.cooldown_until, account.check_verdict) == (None, "live")
    assert fake_kimi.count("chat") == 0


def test_an_invalid_account_is_probed_daily_and_recovers_only_when_its_refresh_succeeds(fake_kimi: FakeKimi) -> None:
    now = timezone.now()
    fake_account(fake_kimi, "dead", state=AccountState.INVALID)
    fake_account(fake_kimi, "revived", state=AccountState.INVALID)  # say, the upstream was wrong
    fake_kimi.revoke_refresh("dead")

    assert run_pass(now) == {
        "dead": ("invalid, daily check", "invalid", "invalid"),
        "revived": ("invalid, daily check", "live", "active"),
    }
    # A dead token's refresh is not counted under the account's name: count them all.
    assert fake_kimi.count("refresh") == 2
    assert run_pass(now + timedelta(hours=23)).keys() == {"revived"}  # now active: the unused check
    assert fake_kimi.count("refresh") == 3  # "dead" not again the same day
    assert run_pass(now + timedelta(hours=25))["dead"] == ("invalid, daily check", "invalid", "invalid")
    assert fake_kimi.count("chat") == 0


def test_an_account_claimed_by_another_process_is_left_alone(fake_kimi: FakeKimi) -> None:
    now = timezone.now()
    account = fake_account(fake_kimi, "alice", state=AccountState.COOLING, cooldown_until=now)
    assert probe_claim(account_id=account.pk, now=now)  # another prober holds it
    assert not probe_claim(account_id=account.pk, now=now)

    assert run_pass(now) == {}
    assert fake_kimi.count("refresh") == 0

    later = run_pass(now + timedelta(minutes=6))  # past the claim, a dead prober's claim is taken over
    assert later == {"alice": ("cooldown over", "live", "active")}
    account.refresh_from_db()
    assert account.probe_claimed_until is None


def test_the_command_prints_one_line_per_probe(fake_kimi: FakeKimi) -> None:
    fake_account(fake_kimi, "alice")
    out = StringIO()

    call_command("pool_probe", stdout=out)
    call_command("pool_probe", stdout=out)

    assert out.getvalue().splitlines() == ["probed alice (unused): live, active", "nothing to probe"]
    assert fake_kimi.count("chat") == 0


def test_the_loop_stops_on_sigterm_after_the_current_pass(fake_kimi: FakeKimi) -> None:
    fake_account(fake_kimi, "alice")
    out = StringIO()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    started = time.monotonic()
    timer.start()
    try:
        call_command("pool_probe", "--loop", "--interval", "60", stdout=out)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    assert time.monotonic() - started < 10  # it did not wait out the 60 s interval
    assert out.getvalue().splitlines() == ["probed alice (unused): live, active"]
