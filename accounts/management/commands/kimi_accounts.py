"""``manage.py kimi_accounts add|list|import|check|origin|models|enable|disable|drift|capacity``: thin
wrappers over the services.

Errors print one line and exit non-zero (``CommandError``); no token is ever printed (the last 4
characters at most). ``list --json`` prints one JSON object per account and line, for scripts.
``drift`` shows the upstream shapes the accounts' turns did not understand (gateway/records/drift.py).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import selectors, services
from accounts.capacity import HORIZONS, capacity_dry_text, capacity_json, capacity_when, pool_capacity
from accounts.checks import CheckResult
from accounts.choices import LimitMode, Origin, Protocol
from accounts.models import KimiAccount
from gateway.records.drift import drift_seen_since

DRIFT_COLUMNS = ("account", "protocol", "kind", "key", "count", "first_seen", "last_seen")


def _account(name: str) -> KimiAccount:
    try:
        return KimiAccount.objects.get(name=name)
    except KimiAccount.DoesNotExist:
        raise CommandError(f"No account named {name!r}.") from None


def _cell(value: object) -> str:
    return "-" if value in (None, "") else str(value)


def _check_detail(result: CheckResult) -> str:
    """What the check learnt (plan, level) or why it failed; a check never spends a turn (C.10)."""
    if result.facts is None:
        return result.message
    facts = result.facts
    level = "" if facts.membership_level is None else f" level {facts.membership_level}"
    return f"plan {facts.plan or 'unknown'}{level}"


MODEL_COLUMNS = ("origin", "model", "scenario", "agent_mode", "kimiplus_id", "efforts", "default_effort", "source")


class Command(BaseCommand):
    help = "Manage the pool of Kimi accounts."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add an account.")
        add.add_argument("--name", required=True)
        add.add_argument("--token", required=True, help="The refresh token (or an access token).")
        add.add_argument("--protocol", choices=Protocol.values, help="Default: detected from the token.")
        add.add_argument("--origin", choices=Origin.values, help="Deployment; default: the token's issuer.")
        add.add_argument("--limit", type=int, help="Turns per window (in learn mode: the cap).")
        add.add_argument(
            "--limit-mode",
            choices=LimitMode.values,
            default=LimitMode.LEARN,
            dest="limit_mode",
            help="learn (default): the limit is learned from quota refusals, at most --limit; pinned: --limit is it.",
        )
        add.add_argument("--window-hours", type=float, dest="window_hours", help="Window length in hours.")
        add.add_argument("--max-concurrent", type=int, dest="max_concurrent", help="Open streams at once.")
        listing = sub.add_parser("list", help="List accounts with their usage.")
        listing.add_argument("--json", action="store_true", help="One JSON object per account and line.")
        imp = sub.add_parser("import", help="Import tokens from a file: 'token' or 'name,token' per line.")
        imp.add_argument("file")
        check = sub.add_parser("check", help="Refresh and ask the account's plan (no chat turn); report it.")
        check.add_argument("names", nargs="*", metavar="NAME")
        origin = sub.add_parser("origin", help="Send an account's calls to another deployment.")
        origin.add_argument("name")
        origin.add_argument("origin", choices=Origin.values)
        models = sub.add_parser("models", help="Print each deployment's model catalogue (upstream, stale or built-in).")
        models.add_argument("--origin", choices=Origin.values, action="append", help="Default: every deployment.")
        for action in ("enable", "disable"):
            sub.add_parser(action, help=f"{action.capitalize()} an account.").add_argument("name")
        capacity = sub.add_parser("capacity", help="Turns free now, in 1 h and 3 h; when the pool would run dry.")
        capacity.add_argument("--json", action="store_true", help="One JSON object: the pool and every account.")
        drift = sub.add_parser("drift", help="Upstream shapes the accounts' turns did not understand.")
        drift.add_argument("--hours", type=float, default=24.0, help="Seen in the last N hours (0: any time).")
        drift.add_argument("--account", metavar="NAME", help="Only this account.")
        drift.add_argument("--samples", action="store_true", help="Print the redacted samples under each row.")
        drift.add_argument("--json", action="store_true", help="One JSON object per row and line, with samples.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_add(self, options: dict[str, Any]) -> None:
        try:
            account, warnings = services.account_create(
                name=options["name"],
                token=options["token"],
                protocol=options["protocol"],
                origin=options["origin"],
                limit=options["limit"],
                window_hours=options["window_hours"],
                max_concurrent=options["max_concurrent"],
                limit_mode=options["limit_mode"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"added {account.name} ({account.protocol}, {account.origin}, token {account.masked_token})")

    def do_list(self, options: dict[str, Any]) -> None:
        now = timezone.now()
        rows = [selectors.account_summary(account=a, now=now) for a in selectors.accounts_for_admin(now=now)]
        rows.sort(key=lambda row: str(row["name"]))
        if options["json"]:
            for row in rows:
                self.stdout.write(json.dumps(row, ensure_ascii=False))
            return
        self.stdout.write("\t".join(selectors.SUMMARY_COLUMNS))
        for row in rows:
            self.stdout.write("\t".join(_cell(row[column]) for column in selectors.SUMMARY_COLUMNS))

    def do_import(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        result = services.accounts_import(lines=lines)
        for item in result.lines:
            verdict = "added" if item.ok else "error"
            self.stdout.write(
                f"line {item.line}: {verdict} {item.name or '-'}" + (f": {item.message}" if item.message else "")
            )
        summary = f"{len(result.created)} added, {len(result.errors)} failed"
        if result.errors:
            raise CommandError(summary)
        self.stdout.write(summary)

    def do_check(self, options: dict[str, Any]) -> None:
        names = options["names"]
        accounts = [_account(name) for name in names] if names else list(KimiAccount.objects.filter(source="pool"))
        failed = 0
        for account in accounts:
            result = services.account_check_now(account=account)
            failed += not result.live
            self.stdout.write(f"{account.name}\t{result.verdict}\t{_check_detail(result)}")
        if failed:
            raise CommandError(f"{failed} of {len(accounts)} account(s) not live.")

    def do_origin(self, options: dict[str, Any]) -> None:
        try:
            services.account_set_origin(account=_account(options["name"]), origin=options["origin"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"{options['name']}: origin {options['origin']}")

    def do_models(self, options: dict[str, Any]) -> None:
        """The catalogue of each origin (kimi-web-protocol.md C.7, 2.12), one model per line."""
        from gateway.kimi.connect.catalogue_cache import catalogues_for
        from gateway.kimi.transport.http import run_upstream

        catalogues = run_upstream(catalogues_for, origins=options["origin"] or Origin.values)
        self.stdout.write("\t".join(MODEL_COLUMNS))
        for origin, catalogue in catalogues.items():
            for model in catalogue.models:
                default = " (default)" if model.id == catalogue.default_model else ""
                efforts = ",".join(e.removeprefix("REASONING_EFFORT_").lower() for e in model.efforts)
                effort = model.default_effort.removeprefix("REASONING_EFFORT_").lower()
                cells = (origin, model.id + default, model.scenario, model.agent_mode, model.kimiplus_id)
                self.stdout.write("\t".join(_cell(c) for c in (*cells, efforts, effort, catalogue.source)))

    def do_capacity(self, options: dict[str, Any]) -> None:
        report = pool_capacity(now=timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps(capacity_json(report), ensure_ascii=False))
            return
        free = ", ".join(f"{label} {n}" for (_, label), n in zip(HORIZONS, report.free, strict=True))
        self.stdout.write(f"pool: turns free {free}")
        self.stdout.write(f"last hour: {report.rate_per_hour} turns; {capacity_dry_text(report)}")
        self.stdout.write("\t".join(["name", "state", *(f"free {label}" for _, label in HORIZONS), "next turn"]))
        for a in report.accounts:
            cells = [a.name, a.state, *map(str, a.free), capacity_when(a.next_turn_at, now=report.now)]
            self.stdout.write("\t".join(cells))

    def do_drift(self, options: dict[str, Any]) -> None:
        hours = options["hours"]
        since = timezone.now() - timedelta(hours=hours) if hours > 0 else None
        rows = drift_seen_since(since=since, account=options["account"], limit=10_000)
        if options["json"]:
            for row in rows:
                self.stdout.write(json.dumps(row.as_json(), ensure_ascii=False))
            return
        if not rows:
            window = f"in the last {hours:g} h" if since else "ever"
            self.stdout.write(f"No upstream shapes the gateway did not understand {window}.")
            return
        self.stdout.write("\t".join(DRIFT_COLUMNS))
        for row in rows:
            cells = row.as_json()
            self.stdout.write("\t".join(_cell(cells[column]) for column in DRIFT_COLUMNS))
            if options["samples"]:
                for sample in row.samples:
                    self.stdout.write("    " + json.dumps(sample, ensure_ascii=False))

    def do_enable(self, options: dict[str, Any]) -> None:
        services.account_enable(account=_account(options["name"]))
        self.stdout.write(f"enabled {options['name']}")

    def do_disable(self, options: dict[str, Any]) -> None:
        services.account_disable(account=_account(options["name"]))
        self.stdout.write(f"disabled {options['name']}")
