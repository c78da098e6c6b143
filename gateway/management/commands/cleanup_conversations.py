"""Delete upstream chats the gateway left behind, reclaim leases of dead processes, drop expired
stored responses (``store`` on /v1/responses).

    python manage.py cleanup_conversations [--older-than 10m] [--loop] [--interval 60]

One line per action. With --loop it runs until SIGTERM/SIGINT, finishing the current chat first.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.pool import lease_reclaim_stale
from gateway.kimi.transport.http import upstream_scoped
from gateway.records.conversations import conversations_sweep
from gateway.records.logs import request_logs_close_abandoned
from gateway.records.responses import stored_responses_sweep

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``12h``, ``30d`` (a bare number means seconds)."""
    text = text.strip().lower()
    unit = text[-1] if text and text[-1] in UNITS else "s"
    number = text[:-1] if text and text[-1] in UNITS else text
    try:
        value = float(number)
    except ValueError:
        raise CommandError(f"not a duration: {text!r} (use e.g. 90s, 10m, 12h, 30d)") from None
    if value < 0:
        raise CommandError(f"a duration cannot be negative: {text!r}")
    return timedelta(seconds=value * UNITS[unit])


class Command(BaseCommand):
    help = "Delete leftover upstream chats (failed deletes, expired kept chats, abandoned ones)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="10m", help="only rows idle at least this long (default 10m)")
        parser.add_argument("--loop", action="store_true", help="keep sweeping until SIGTERM")
        parser.add_argument("--interval", type=float, default=60.0, help="seconds between sweeps with --loop")
        parser.add_argument("--limit", type=int, default=100, help="rows per sweep")

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = parse_duration(options["older_than"])
        self.stopping = False
        if options["loop"]:
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        while True:
            self._sweep(older_than, options["limit"])
            if not options["loop"] or self.stopping:
                return
            deadline = time.monotonic() + options["interval"]
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.2)
            if self.stopping:
                return

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _sweep(self, older_than: timedelta, limit: int) -> None:
        reclaimed = lease_reclaim_stale()
        if reclaimed:
            self.stdout.write(f"reclaimed {reclaimed} stale lease(s)")
        abandoned = request_logs_close_abandoned()
        if abandoned:
            self.stdout.write(f"closed {abandoned} abandoned request log(s)")
        expired = stored_responses_sweep()
        if expired:
            self.stdout.write(f"dropped {expired} expired stored response(s)")
        sweep = conversations_sweep(older_than=older_than, limit=limit, should_stop=lambda: self.stopping)
        items = asyncio.run(upstream_scoped(sweep))
        for item in items:
            verb = "deleted" if item.deleted else "delete failed"
            self.stdout.write(f"{verb} chat {item.chat_id or '(no id)'} on {item.account_name} ({item.reason})")
        if not items:
            self.stdout.write("nothing to clean up")
