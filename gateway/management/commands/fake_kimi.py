"""``python manage.py fake_kimi --port 9000 [--ai-port 9001] [--host 127.0.0.1] [--demo]``: the fake Kimi upstream.

Point KIMI_BASE_URL, KIMI_AUTH_URL and KIMI_LEGACY_BASE_URL at the printed URL, and KIMI_AI_BASE_URL and
KIMI_AI_AUTH_URL at the kimi.ai one (or at the same URL: every port answers every path, the port only
says which deployment a call is recorded as having reached); drive it over ``/_fake/``
(gateway/kimi/fake/README.md). For demos, benchmarks and multi-process tests; never for production.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gateway.kimi.fake import FakeKimi, FakeKimiServer


class Command(BaseCommand):
    help = "Run the fake Kimi server (both protocols) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=9000, help="TCP port (0: any free port)")
        parser.add_argument("--ai-port", type=int, default=0, dest="ai_port", help="kimi.ai port (0: any free port)")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
        parser.add_argument(
            "--demo", action="store_true", help="answer in character when nothing is scripted (make demo)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fake = FakeKimi()
        fake.configure(demo=options["demo"])
        server = FakeKimiServer(fake, host=options["host"], port=options["port"], ai_port=options["ai_port"])
        self.stdout.write(f"fake Kimi listening on {server.url} (kimi.ai: {server.url_ai})", ending="\n")
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the captured SIGINT after shutting down
            server.serve_forever()
        self.stdout.write("fake Kimi stopped")
