"""``manage.py kimi_accounts add|list|import|check|enable|disable``: thin wrappers over the services.

Errors print one line and exit non-zero (``CommandError``); no token is ever printed.
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import selectors, services
from accounts.choices import Protocol
from accounts.models import KimiAccount


def _account(name: str) -> KimiAccount:
    try:
        return KimiAccount.objects.get(name=name)
    except KimiAccount.DoesNotExist:
        raise CommandError(f"No account named {name!r}.") from None


class Command(BaseCommand):
    help = "Manage the pool of Kimi accounts."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add an account.")
        add.add_argument("--name", required=True)
        add.add_argument("--token", required=True, help="The refresh token (or an access token).")
        add.add_argument("--protocol", choices=Protocol.values, help="Default: detected from the token.")
        add.add_argument("--limit", type=int, help="Turns per window.")
        add.add_argument("--window-hours", type=float, dest="window_hours", help="Window length in hours.")
        add.add_argument("--max-concurrent", type=int, dest="max_concurrent", help="Open streams at once.")
        sub.add_parser("list", help="List accounts with their usage.")
        imp = sub.add_parser("import", help="Import tokens from a file: 'token' or 'name,token' per line.")
        imp.add_argument("file")
        check = sub.add_parser("check", help="Refresh tokens now and report live/invalid.")
        check.add_argument("names", nargs="*", metavar="NAME")
        for action in ("enable", "disable"):
            sub.add_parser(action, help=f"{action.capitalize()} an account.").add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_add(self, options: dict[str, Any]) -> None:
        try:
            account, warnings = services.account_create(
                name=options["name"],
                token=options["token"],
                protocol=options["protocol"],
                limit=options["limit"],
                window_hours=options["window_hours"],
                max_concurrent=options["max_concurrent"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"added {account.name} ({account.protocol}, token {account.masked_token})")

    def do_list(self, options: dict[str, Any]) -> None:
        now = timezone.now()
        self.stdout.write("name\tprotocol\tstate\tused/limit\ttoken")
        for account in selectors.accounts_for_admin(now=now).order_by("name"):
            usage = selectors.usage_from_annotations(account=account, now=now)
            row = [account.name, account.protocol, account.state, f"{usage.used}/{usage.limit}", account.masked_token]
            self.stdout.write("\t".join(row))

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
        invalid = 0
        for account in accounts:
            live = services.account_check_now(account=account)
            invalid += not live
            self.stdout.write(f"{account.name}\t{'live' if live else 'invalid'}")
        if invalid:
            raise CommandError(f"{invalid} of {len(accounts)} account(s) invalid.")

    def do_enable(self, options: dict[str, Any]) -> None:
        services.account_enable(account=_account(options["name"]))
        self.stdout.write(f"enabled {options['name']}")

    def do_disable(self, options: dict[str, Any]) -> None:
        services.account_disable(account=_account(options["name"]))
        self.stdout.write(f"disabled {options['name']}")
