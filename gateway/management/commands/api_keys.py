"""``manage.py api_keys create|list|set|revoke``: thin wrappers over ``gateway.records.keys``.

``create`` prints the new key alone on its last line (scripts take ``tail -n1``); it is never shown again.
"""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from gateway.models import ApiKey
from gateway.records.keys import (
    api_key_create,
    api_key_revoke,
    api_key_set_repair_turns,
    api_key_set_turns_per_day,
)

TURNS_HELP = "Upstream turns per rolling 24 hours (default: no limit)."
REPAIR_HELP = (
    "Extra upstream turns a collected answer may spend on a repair (a tool call failing its schema, "
    "invalid JSON output); 0 = none (the default). Each one spends the account's limit."
)


def _budget(text: str) -> int | None:
    if text.strip().lower() in ("none", "-"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"not a number of turns: {text!r} (or 'none')") from None


UNCHANGED: Any = object()  # ``set`` without --turns-per-day ('none' is a value: no budget)


class Command(BaseCommand):
    help = "Manage gateway API keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--name", required=True)
        create.add_argument("--rpm", type=int, help="Requests per minute (default: no limit).")
        create.add_argument("--models", default="", help="Comma-separated allowed models (default: all).")
        create.add_argument("--max-concurrent", type=int, dest="max_concurrent", help="Open streams at once.")
        create.add_argument("--turns-per-day", type=int, dest="turns_per_day", help=TURNS_HELP)
        create.add_argument("--repair-turns", type=int, dest="repair_turns", default=0, help=REPAIR_HELP)
        sub.add_parser("list", help="List keys (prefixes only).")
        change = sub.add_parser("set", help="Change a key's limits.")
        change.add_argument("name")
        change.add_argument(
            "--turns-per-day",
            type=_budget,
            dest="turns_per_day",
            default=UNCHANGED,
            help=TURNS_HELP + " 'none' removes it.",
        )
        change.add_argument("--repair-turns", type=int, dest="repair_turns", help=REPAIR_HELP)
        sub.add_parser("revoke", help="Revoke a key.").add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_create(self, options: dict[str, Any]) -> None:
        models = [m for m in options["models"].split(",") if m.strip()]
        try:
            key, raw = api_key_create(
                name=options["name"],
                rpm=options["rpm"],
                allowed_models=models,
                max_concurrent=options["max_concurrent"],
                turns_per_day=options["turns_per_day"],
                repair_turns=options["repair_turns"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"created key {key.name}; store it now, it is not shown again:")
        self.stdout.write(raw)

    def do_list(self, options: dict[str, Any]) -> None:
        self.stdout.write("name\tprefix\tstatus\trpm\tturns_per_day\tmodels\tlast_used")
        for key in ApiKey.objects.order_by("name"):
            row = [
                key.name,
                f"{key.prefix}…",
                "active" if key.is_active else "revoked",
                str(key.rpm_limit or "-"),
                str(key.turns_per_day or "-"),
                ",".join(key.allowed_models) or "all",
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never",
            ]
            self.stdout.write("\t".join(row))

    def do_set(self, options: dict[str, Any]) -> None:
        turns_per_day, repair_turns = options["turns_per_day"], options["repair_turns"]
        if turns_per_day is UNCHANGED and repair_turns is None:
            raise CommandError("Nothing to set: give --turns-per-day and/or --repair-turns.")
        key = _key(options["name"])
        try:
            if turns_per_day is not UNCHANGED:
                api_key_set_turns_per_day(key=key, turns_per_day=turns_per_day)
            if repair_turns is not None:
                api_key_set_repair_turns(key=key, repair_turns=repair_turns)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        said = []
        if turns_per_day is not UNCHANGED:
            said.append(f"{key.turns_per_day} turns per day" if key.turns_per_day else "no turn budget")
        if repair_turns is not None:
            said.append(f"{key.repair_turns} repair turns" if key.repair_turns else "no repair turns")
        self.stdout.write(f"{key.name}: {', '.join(said)}")

    def do_revoke(self, options: dict[str, Any]) -> None:
        key = _key(options["name"])
        self.stdout.write(f"revoked {key.name}" if api_key_revoke(key=key) else f"{key.name} was already revoked")


def _key(name: str) -> ApiKey:
    try:
        return ApiKey.objects.get(name=name)
    except ApiKey.DoesNotExist:
        raise CommandError(f"No API key named {name!r}.") from None
