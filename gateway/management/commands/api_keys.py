"""``manage.py api_keys create|list|revoke``: thin wrappers over ``gateway.records.keys``.

``create`` prints the new key alone on its last line (scripts take ``tail -n1``); it is never shown again.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from gateway.models import ApiKey
from gateway.records.keys import api_key_create, api_key_revoke


class Command(BaseCommand):
    help = "Manage gateway API keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--name", required=True)
        create.add_argument("--rpm", type=int, help="Requests per minute (default: no limit).")
        create.add_argument("--models", default="", help="Comma-separated allowed models (default: all).")
        create.add_argument("--max-concurrent", type=int, dest="max_concurrent", help="Open streams at once.")
        sub.add_parser("list", help="List keys (prefixes only).")
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
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"created key {key.name}; store it now, it is not shown again:")
        self.stdout.write(raw)

    def do_list(self, options: dict[str, Any]) -> None:
        self.stdout.write("name\tprefix\tstatus\trpm\tmodels\tlast_used")
        for key in ApiKey.objects.order_by("name"):
            row = [
                key.name,
                f"{key.prefix}…",
                "active" if key.is_active else "revoked",
                str(key.rpm_limit or "-"),
                ",".join(key.allowed_models) or "all",
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never",
            ]
            self.stdout.write("\t".join(row))

    def do_revoke(self, options: dict[str, Any]) -> None:
        try:
            key = ApiKey.objects.get(name=options["name"])
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key named {options['name']!r}.") from None
        self.stdout.write(f"revoked {key.name}" if api_key_revoke(key=key) else f"{key.name} was already revoked")
