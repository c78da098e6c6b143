"""Keep the dashboard's hourly rollup current: ``python manage.py rollup_request_logs [--rebuild]``.

Rolls up every complete hour after the watermark (the dashboard also does up to 48 hours per view);
``--rebuild`` throws the rollup away and rebuilds the last 31 days, e.g. after importing old rows.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from gateway.dashboard.rollup import rollup_catch_up, rollup_rebuild, rollup_watermark


class Command(BaseCommand):
    help = "Roll request logs up into hourly dashboard aggregates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="Rebuild the last 31 days from scratch.")

    def handle(self, *args: Any, rebuild: bool, **options: Any) -> None:
        now = timezone.now()
        hours = rollup_rebuild(now=now) if rebuild else rollup_catch_up(now=now)
        self.stdout.write(f"rolled up {hours} hours; rollup now ends at {rollup_watermark()}")
