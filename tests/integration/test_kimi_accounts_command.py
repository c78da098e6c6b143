"""``manage.py kimi_accounts`` in every documented form, including errors and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import pool
from accounts.choices import AccountState
from accounts.models import KimiAccount
from accounts.selectors import SUMMARY_COLUMNS
from gateway.kimi.fake import FakeKimi
from tests.factories import make_account, make_jwt

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("kimi_accounts", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_adds_an_account_with_options() -> None:
    token = make_jwt(protocol="connect")
    out, err = run(
        "add", "--name", "main", "--token", token, "--protocol", "legacy", "--limit", "12", "--window-hours", "2"
    )
    account = KimiAccount.objects.get(name="main")
    assert (account.protocol, account.turn_limit, account.window_seconds) == ("legacy", 12, 7200)
    assert token not in out + err and f"...{token[-4:]}" in out


def test_it_warns_on_an_access_token() -> None:
    out, err = run("add", "--name", "acc", "--token", make_jwt(typ="access"))
    assert "cannot be renewed" in err and "added acc" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--name", "dup", "--token", "TOKEN"], "already exists"),
        (["add", "--name", "new", "--token", "short"], "too short"),
        (["add", "--name", "new", "--token", "two parts separated here"], "whitespace"),
        (["disable", "nobody"], "No account named 'nobody'"),
        (["enable", "nobody"], "No account named 'nobody'"),
        (["check", "nobody"], "No account named 'nobody'"),
    ],
)
def test_it_fails_with_one_clear_line(args: list[str], message: str) -> None:
    make_account(name="dup")
    args = [make_jwt() if a == "TOKEN" else a for a in args]
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_it_lists_accounts_tab_separated_with_usage_and_masks() -> None:
    token = make_jwt()
    make_account(name="a1", token=token, limit=5)
    make_account(name="b2", protocol="legacy", state=AccountState.DISABLED)
    pool.lease_release(lease=pool.account_reserve(), outcome="ok")

    out, _ = run("list")

    lines = out.splitlines()
    header = [
        "name", "protocol", "origin", "state", "reason", "until", "used/limit", "limit_mode", "limit_source",
        "plan", "token", "expires", "token_expires_in",
    ]  # fmt: skip
    assert lines[0].split("\t") == header
    row = dict(zip(header, lines[1].split("\t"), strict=True))
    assert row | {"expires": "?", "token_expires_in": "?"} == {
        "name": "a1",
        "protocol": "connect",
        "origin": "kimi.com",
        "state": "active",
        "reason": "-",
        "until": "-",
        "used/limit": "1/5",
        "limit_mode": "learn",
        "limit_source": "cap",
        "plan": "-",
        "token": f"...{token[-4:]}",
        "expires": "?",
        "token_expires_in": "?",
    }
    assert row["expires"].startswith("20")  # the refresh token's exp
    assert lines[2].split("\t")[:5] == ["b2", "legacy", "kimi.com", "disabled", "-"]
    assert token not in out


def test_it_lists_one_json_object_per_account_with_every_text_column() -> None:
    token = make_jwt(aud=["kimi.ai"])
    make_account(name="ai", token=token, limit=5)
    cooling = make_account(name="cool")
    KimiAccount.objects.filter(pk=cooling.pk).update(
        state="cooling", cooldown_until="2030-01-01T00:00:00Z", last_error_code="refresh_refused"
    )

    out, _ = run("list", "--json")

    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["name"] for row in rows] == ["ai", "cool"]
    assert all(set(SUMMARY_COLUMNS) <= set(row) for row in rows)
    assert (rows[0]["origin"], rows[0]["used"], rows[0]["limit"]) == ("kimi.ai", 0, 5)
    assert rows[0]["token"] == f"...{token[-4:]}"
    assert rows[1]["state"] == "cooling" and rows[1]["reason"] == "refresh_refused"
    assert rows[1]["until"].startswith("2030-01-01T00:00:00")
    assert token not in out and token[:-4] not in out


def test_it_adds_with_the_origin_of_the_token_and_changes_it() -> None:
    run("add", "--name", "ai", "--token", make_jwt(aud=["kimi.ai"]))
    run("add", "--name", "com", "--token", make_jwt(), "--origin", "kimi.ai")
    assert dict(KimiAccount.objects.values_list("name", "origin")) == {"ai": "kimi.ai", "com": "kimi.ai"}

    assert run("origin", "com", "kimi.com")[0].strip() == "com: origin kimi.com"
    assert KimiAccount.objects.get(name="com").origin == "kimi.com"
    make_account(name="old", protocol="legacy")
    with pytest.raises(CommandError, match="legacy account has no kimi.ai origin"):
        run("origin", "old", "kimi.ai")


def test_it_imports_a_file_and_exits_non_zero_on_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(f"# comment\n\nx,{make_jwt()}\n{make_jwt()}\n")
    out, _ = run("import", str(good))
    assert "2 added, 0 failed" in out and KimiAccount.objects.count() == 2

    bad = tmp_path / "bad.txt"
    bad.write_text(f"y,{make_jwt()}\nz,nope\n")
    with pytest.raises(CommandError, match="1 added, 1 failed"):
        run("import", str(bad))
    assert KimiAccount.objects.filter(name="y").exists()
    with pytest.raises(CommandError, match="Cannot read"):
        run("import", str(tmp_path / "missing.txt"))


def test_it_enables_and_disables_by_name() -> None:
    account = make_account(name="acct")
    assert run("disable", "acct")[0].strip() == "disabled acct"
    account.refresh_from_db()
    assert account.state == AccountState.DISABLED
    run("enable", "acct")
    account.refresh_from_db()
    assert account.state == AccountState.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_it_checks_accounts_without_a_chat_and_fails_when_one_is_invalid(fake_kimi: FakeKimi) -> None:
    make_account(name="live", token=fake_kimi.mint_account("live", paid=True).refresh_token)
    make_account(name="dead", token=fake_kimi.mint_account("dead").refresh_token)
    fake_kimi.revoke_refresh("dead")

    assert run("check", "live")[0].strip() == "live\tlive\tplan Moderato level 40"
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 account"):
        call_command("kimi_accounts", "check", stdout=out)

    assert "dead\tinvalid\t" in out.getvalue() and "live\tlive" in out.getvalue()
    assert fake_kimi.count("chat") == 0  # a check costs no turn (C.10)
    assert KimiAccount.objects.get(name="dead").state == AccountState.INVALID


def test_it_exits_non_zero_with_one_line_from_the_shell() -> None:
    # The real entry point. A malformed token is refused before any query, so no database is needed.
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "kimi_accounts", "--skip-checks", "add", "--name", "x", "--token", "short"],
        capture_output=True,
        text=True,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": "sqlite://:memory:", "PATH": ""},
        cwd=settings.BASE_DIR,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: The token is too short to be a Kimi token (5 characters)."
    ]


def test_it_lists_only_the_header_without_accounts() -> None:
    assert run("list")[0] == "\t".join(SUMMARY_COLUMNS) + "\n"
    assert run("list", "--json")[0] == ""


def test_models_prints_each_deployments_catalogue_and_where_it_came_from(fake_kimi: FakeKimi) -> None:
    # kimi-web-protocol.md C.7: kimi.ai's own catalogue; kimi.com's fetch refused, so the built-in table.
    k5 = {
        "id": "k5-chat",
        "scenario": "SCENARIO_K2D5",
        "agentMode": "",
        "defaultReasoningEffort": "REASONING_EFFORT_LOW",
    }
    k5["reasoningEffortOptions"] = [{"effort": "REASONING_EFFORT_NONE"}, {"effort": "REASONING_EFFORT_LOW"}]
    fake_kimi.configure(catalogues={"kimi.ai": {"availableModels": [k5], "defaultScenario": {"model": "k5-chat"}}})
    fake_kimi.fault("http_5xx", on="models", status=503)  # the first fetch: kimi.com's

    out, _ = run("models")

    lines = [line.split("\t") for line in out.splitlines()]
    assert lines[0] == [
        "origin",
        "model",
        "scenario",
        "agent_mode",
        "kimiplus_id",
        "efforts",
        "default_effort",
        "source",
    ]
    assert lines[1:] == [
        ["kimi.com", "k2d6-chat", "SCENARIO_CHAT", "-", "-", "none,low", "low", "builtin"],
        ["kimi.com", "k28-agent-preview", "SCENARIO_OK_COMPUTER", "TYPE_NORMAL", "ok-computer", "-", "-", "builtin"],
        [
            "kimi.com",
            "k3-agent",
            "SCENARIO_OK_COMPUTER",
            "TYPE_NORMAL",
            "ok-computer",
            "low,high,max",
            "high",
            "builtin",
        ],
        ["kimi.com", "k3-agent-swarm", "SCENARIO_OK_COMPUTER_SWARM", "TYPE_ULTRA", "ok-computer", "-", "-", "builtin"],
        ["kimi.ai", "k5-chat (default)", "SCENARIO_K2D5", "-", "-", "none,low", "low", "upstream"],
    ]
    assert [(c.deployment, c.status) for c in fake_kimi.calls] == [("kimi.com", 503), ("kimi.ai", 200)]
    only_ai, _ = run("models", "--origin", "kimi.ai")
    assert [line.split("\t")[0] for line in only_ai.splitlines()[1:]] == ["kimi.ai"]
