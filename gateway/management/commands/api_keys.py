"""``manage.py api_keys create|list|set|revoke``: thin wrappers over ``gateway.records.keys``.

``create`` prints the new key alone on its last line (scripts take ``tail -n1``); it is never shown again.
"""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from gateway.models import ApiKey
from gateway.records.keys import (
    api_key_create,
    api_key_revoke,
    api_key_set_native_multiturn,
    api_key_set_repair_turns,
    api_key_set_turns_per_day,
)

UNCHANGED: Any = object()  # an option not given to `set` ('none' is a value of --turns-per-day)
NATIVE_HELP = (
    "Continue the same Kimi chat when a client resends its history; keeps each chat on Kimi until it has "
    "been idle for KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS."
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
        create.add_argument(
            "--no-local-probes",
            dest="local_probes",
            action="store_false",
            help="Send clients' max_tokens <= 1 probes upstream instead of answering them locally.",
        )
        create.add_argument("--native-multiturn", dest="native_multiturn", action="store_true", help=NATIVE_HELP)
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
        change.add_argument(
            "--native-multiturn", dest="native_multiturn", action=BooleanOptionalAction, default=None, help=NATIVE_HELP
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
                local_probes=options["local_probes"],
                native_multiturn=options["native_multiturn"],
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
        turns, native, repairs = options["turns_per_day"], options["native_multiturn"], options["repair_turns"]
        if turns is UNCHANGED and native is None and repairs is None:
            raise CommandError("Say what to change: --turns-per-day, --(no-)native-multiturn and/or --repair-turns.")
        key = _key(options["name"])
        try:
            if turns is not UNCHANGED:
                api_key_set_turns_per_day(key=key, turns_per_day=turns)
            if repairs is not None:
                api_key_set_repair_turns(key=key, repair_turns=repairs)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if native is not None:
            api_key_set_native_multiturn(key=key, enabled=native)
        said = []  # what was changed, as it now is
        if turns is not UNCHANGED:
            said.append(f"{key.turns_per_day} turns per day" if key.turns_per_day else "no turn budget")
        if native is not None:
            said.append("native multi-turn on" if key.native_multiturn else "native multi-turn off")
        if repairs is not None:
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
