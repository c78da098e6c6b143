"""Request-log retention: ``python manage.py prune_request_logs [--older-than 30d]``.

Deletes log rows created before now minus the given age (default ``KIMIPROXY_LOG_RETENTION_DAYS``
days) and prints one line. Run it daily (cron, or a second container) so the table stays bounded.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.records.logs import request_logs_prune

_AGE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h`` or ``90m``. A unit is required: a bare number is refused rather than guessed,
    since guessing wrong here deletes logs."""
    match = _AGE.match(text.strip().lower())
    if match is None:
        raise CommandError(f"not an age: {text!r} (use a whole number with d, h or m, e.g. 30d, 12h, 90m)")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise CommandError("the age must be more than zero")
    return timedelta(**{_UNITS[unit]: amount})


class Command(BaseCommand):
    help = "Delete request-log rows older than a given age (default: KIMIPROXY_LOG_RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            default=None,
            help="age such as 30d, 12h or 90m (default: KIMIPROXY_LOG_RETENTION_DAYS days)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = options["older_than"]
        if text is None:
            if settings.KIMIPROXY_LOG_RETENTION_DAYS <= 0:
                self.stdout.write("retention is off (KIMIPROXY_LOG_RETENTION_DAYS <= 0): nothing deleted")
                return
            text = f"{settings.KIMIPROXY_LOG_RETENTION_DAYS}d"
        older_than = parse_age(text)
        deleted = request_logs_prune(older_than=older_than)
        self.stdout.write(f"deleted {deleted} request log row(s) older than {text}")
