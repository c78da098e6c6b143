"""Browser-test plumbing: find Debian's chromium, and drive Playwright outside Django's thread.

Playwright's sync API runs an event loop in the thread that uses it, and Django refuses ORM calls in a
thread with a running loop; so the browser runs in a worker thread while the test thread owns the
database. Without chromium the tests skip, unless ``KIMIPROXY_REQUIRE_BROWSER=1`` (CI) makes that a
failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
T = TypeVar("T")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not found: install it with `apt-get install -y chromium` to run the browser tests"
    if os.environ.get("KIMIPROXY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"KIMIPROXY_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def in_browser(chromium_path: Path) -> Callable[[Callable[[Any], T]], T]:
    """``in_browser(steps)`` runs ``steps(page)`` in a fresh headless chromium in a worker thread."""

    def run(steps: Callable[[Any], T]) -> T:
        def session() -> T:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(chromium_path), args=LAUNCH_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 900})
                    page.set_default_timeout(15_000)
                    return steps(page)
                finally:
                    browser.close()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(session).result(timeout=90)

    return run


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
