"""``manage.py api_keys create|list|revoke`` in their documented forms."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway.models import ApiKey
from gateway.records.keys import api_key_authenticate
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("api_keys", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_key_and_prints_it_alone_on_the_last_line() -> None:
    out = run("create", "--name", "ci", "--rpm", "30", "--models", "kimi, kimi-search")
    raw = out.rstrip("\n").splitlines()[-1]
    key = api_key_authenticate(raw=raw)
    assert key is not None and key.name == "ci"
    assert (key.rpm_limit, key.allowed_models) == (30, ["kimi", "kimi-search"])
    assert out.count(raw) == 1


def test_it_refuses_a_duplicate_name() -> None:
    make_api_key(name="ci")
    with pytest.raises(CommandError, match="already exists"):
        run("create", "--name", "ci")
    assert ApiKey.objects.count() == 1


def test_it_lists_keys_by_prefix_only() -> None:
    key, raw = make_api_key(name="alpha", rpm=10, allowed_models=["kimi"])
    make_api_key(name="beta", revoked=True)
    lines = run("list").splitlines()
    assert lines[0].split("\t") == ["name", "prefix", "status", "rpm", "turns_per_day", "models", "last_used"]
    assert lines[1].split("\t") == ["alpha", f"{key.prefix}…", "active", "10", "-", "kimi", "never"]
    assert lines[2].split("\t")[2] == "revoked"
    assert raw not in "\n".join(lines)


def test_it_revokes_by_name_and_fails_on_an_unknown_name() -> None:
    _, raw = make_api_key(name="gone")
    assert run("revoke", "gone").strip() == "revoked gone"
    assert api_key_authenticate(raw=raw) is None
    assert run("revoke", "gone").strip() == "gone was already revoked"
    with pytest.raises(CommandError, match="No API key named 'nobody'"):
        run("revoke", "nobody")


def test_it_creates_and_changes_a_turn_budget() -> None:
    raw = run("create", "--name", "agent", "--turns-per-day", "50").rstrip("\n").splitlines()[-1]
    key = api_key_authenticate(raw=raw)
    assert key is not None and key.turns_per_day == 50

    assert run("set", "agent", "--turns-per-day", "20").strip() == "agent: 20 turns per day"
    assert ApiKey.objects.get(name="agent").turns_per_day == 20
    assert run("set", "agent", "--turns-per-day", "none").strip() == "agent: no turn budget"
    assert ApiKey.objects.get(name="agent").turns_per_day is None
    with pytest.raises(CommandError, match="at least 1"):
        run("set", "agent", "--turns-per-day", "0")
    with pytest.raises(CommandError, match="No API key named 'nobody'"):
        run("set", "nobody", "--turns-per-day", "5")


def test_it_turns_native_multi_turn_on_and_off() -> None:
    run("create", "--name", "agent", "--native-multiturn")
    assert ApiKey.objects.get(name="agent").native_multiturn is True
    assert run("set", "agent", "--no-native-multiturn").strip() == "agent: native multi-turn off"
    assert ApiKey.objects.get(name="agent").native_multiturn is False
    assert run("set", "agent", "--native-multiturn", "--turns-per-day", "9").strip() == (
        "agent: 9 turns per day, native multi-turn on"
    )
    with pytest.raises(CommandError, match="Say what to change"):
        run("set", "agent")


def test_it_creates_and_changes_the_repair_turns() -> None:
    raw = run("create", "--name", "fixer", "--repair-turns", "1").rstrip("\n").splitlines()[-1]
    key = api_key_authenticate(raw=raw)
    assert key is not None and key.repair_turns == 1
    plain = run("create", "--name", "plain").rstrip("\n").splitlines()[-1]
    assert api_key_authenticate(raw=plain).repair_turns == 0  # type: ignore[union-attr]  # repairs off by default

    assert run("set", "fixer", "--repair-turns", "0").strip() == "fixer: no repair turns"
    assert run("set", "fixer", "--repair-turns", "2", "--turns-per-day", "9").strip() == (
        "fixer: 9 turns per day, 2 repair turns"
    )
    assert ApiKey.objects.values_list("repair_turns", "turns_per_day").get(name="fixer") == (2, 9)
    with pytest.raises(CommandError, match="between 0 and 3"):
        run("set", "fixer", "--repair-turns", "4")
    with pytest.raises(CommandError, match="Say what to change"):
        run("set", "fixer")
