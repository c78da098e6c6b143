"""Probe the accounts whose state the pool needs to learn, without spending a turn (accounts/probing.py).

    python manage.py pool_probe            # one pass, then exit
    python manage.py pool_probe --loop     # a pass every KIMIPROXY_PROBE_INTERVAL seconds (jittered)

One line per probed account. With --loop it runs until SIGTERM/SIGINT, finishing the current probe first.
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts.probing import pool_probe_pass

# Each pass waits the interval times a factor in this range, so several gateways sharing a pool (or one
# restarted many times) do not probe in step.
JITTER = (0.8, 1.2)


class Command(BaseCommand):
    help = "Check cooling, exhausted, refresh-due, unused and (daily) invalid accounts without spending a turn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep probing until SIGTERM")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between passes with --loop, and how long unused counts as unused "
            "(default KIMIPROXY_PROBE_INTERVAL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] or settings.KIMIPROXY_PROBE_INTERVAL
        self.stopping = False
        if options["loop"]:
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        while True:
            self._pass(interval)
            if not options["loop"] or self.stopping:
                return
            deadline = time.monotonic() + interval * random.uniform(*JITTER)
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.2)
            if self.stopping:
                return

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _pass(self, interval: float) -> None:
        items = pool_probe_pass(
            interval=interval,
            refresh_margin=settings.KIMIPROXY_TOKEN_REFRESH_MARGIN,
            should_stop=lambda: self.stopping,
        )
        for item in items:
            self.stdout.write(item.line())
        if not items:
            self.stdout.write("nothing to probe")
