"""The dashboard and the accounts admin as a person sees them, in headless chromium."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from accounts.crypto import token_encrypt
from accounts.models import KimiAccount

pytestmark = [
    pytest.mark.browser,
    pytest.mark.urls("tests.browser.urlconf"),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),  # whitenoise: static comes from finders
]
CHARTS = ["outcomes", "latency", "accounts", "errors", "keys", "models"]
# For each chart: how many drawn elements carry a value (a non-zero bar, a point with a value).
COUNT_POINTS = """(ids) => Object.fromEntries(ids.map((id) => {
  const chart = Chart.getChart(document.getElementById("chart-" + id));
  if (!chart) return [id, 0];
  return [id, chart.data.datasets.reduce((sum, ds, i) => sum + chart.getDatasetMeta(i).data.filter(
    (_, j) => ds.data[j] !== null && ds.data[j] !== 0).length, 0)];
}))"""
Browser = Callable[[Callable[[Any], Any]], Any]


def log_in(page: Any, base_url: str, next_path: str) -> None:
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "browser-test-pw-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


@pytest.fixture
def staff(transactional_db: None) -> User:
    return User.objects.create_superuser("admin", "admin@example.invalid", "browser-test-pw-1")


def test_it_draws_every_chart_with_data_and_switches_the_range(
    live_server: Any, staff: User, in_browser: Browser, artifacts: Path
) -> None:
    call_command("seed_request_logs", "--rows", "4000", "--days", "8", "--accounts", "6", "--seed", "3",
                 stdout=StringIO())  # fmt: skip

    def steps(page: Any) -> dict[str, Any]:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in(page, live_server.url, "/dashboard/?range=3h")
        page.wait_for_selector("body[data-charts-ready='1']")
        short = page.evaluate(COUNT_POINTS, CHARTS)
        page.screenshot(path=str(artifacts / "dashboard-3h.png"), full_page=True)
        page.click("a[data-range='7d']")
        page.wait_for_url("**/dashboard/?range=7d")
        page.wait_for_selector("body[data-charts-ready='1']")
        page.screenshot(path=str(artifacts / "dashboard-7d.png"), full_page=True)
        return {
            "short": short,
            "long": page.evaluate(COUNT_POINTS, CHARTS),
            "active": page.inner_text(".kp-ranges a.kp-active"),
            "requests": int(page.inner_text("[data-headline='requests']")),
            "rows": page.locator("#account-table tbody tr").count(),
            "errors": errors,
        }

    seen = in_browser(steps)
    for chart in CHARTS:
        assert seen["short"][chart] > 0, f"{chart} chart has no data points for 3h"
        assert seen["long"][chart] > 0, f"{chart} chart has no data points for 7d"
    assert seen["active"] == "Last 7 days"
    assert 3000 < seen["requests"] < 4000
    assert seen["rows"] == 6
    assert seen["errors"] == []


def test_it_masks_the_account_token_on_its_change_page(
    live_server: Any, staff: User, in_browser: Browser, artifacts: Path
) -> None:
    token = "eyJhbGciOiJIUzUxMiJ9.browser-secret-refresh-token.sig9XyZ"
    account = KimiAccount.objects.create(
        name="browser-account", refresh_token_enc=token_encrypt(token), token_last4=token[-4:]
    )
    KimiAccount.objects.create(name="second-account", token_last4="wxyz")

    def steps(page: Any) -> dict[str, str]:
        log_in(page, live_server.url, "/admin/accounts/kimiaccount/")
        page.screenshot(path=str(artifacts / "accounts-list.png"), full_page=True)
        listing = page.content()
        page.goto(f"{live_server.url}/admin/accounts/kimiaccount/{account.pk}/change/")
        return {"listing": listing, "change": page.content(), "title": page.title()}

    seen = in_browser(steps)
    assert "browser-account" in seen["change"]
    for html in (seen["listing"], seen["change"]):
        assert token not in html and "browser-secret-refresh-token" not in html
        assert "...9XyZ" in html  # the masked form: the last four characters only


def test_a_lone_current_hour_is_drawn_on_the_latency_chart(
    live_server: Any, staff: User, in_browser: Browser, artifacts: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.models import RequestLog

    now = datetime.now(UTC)
    for n in range(14):  # a new user's first requests: all in the current hour
        RequestLog.objects.create(
            request_id=f"lone-{n}", created_at=now - timedelta(seconds=1, milliseconds=n), outcome="ok",
            status_code=200, model="kimi", ttft_ms=400, latency_ms=1500,
        )  # fmt: skip

    def steps(page: Any) -> dict[str, Any]:
        log_in(page, live_server.url, "/dashboard/?range=24h")
        page.wait_for_selector("body[data-charts-ready='1']")
        page.screenshot(path=str(artifacts / "dashboard-lone-hour.png"), full_page=True)
        radii = page.evaluate("""() => {
          const chart = Chart.getChart(document.getElementById("chart-latency"));
          if (!chart) return null;
          return chart.data.datasets.map((ds, i) => {
            const j = ds.data.length - 1;
            return [ds.data[j], chart.getDatasetMeta(i).data[j].options.radius];
          });
        }""")
        return {"radii": radii, "p50": page.inner_text("[data-headline='ttft_p50']")}

    seen = in_browser(steps)
    assert seen["p50"] == "400 ms"
    assert seen["radii"] is not None and len(seen["radii"]) == 4  # the chart was drawn, not "No data"
    for value, radius in seen["radii"]:
        assert value is not None and radius > 0  # the current hour's value is visible as a point


def test_the_request_log_list_fits_or_scrolls_at_1400_px(
    live_server: Any, staff: User, in_browser: Browser, artifacts: Path
) -> None:
    call_command("seed_request_logs", "--rows", "200", "--days", "1", "--accounts", "4", "--seed", "5",
                 stdout=StringIO())  # fmt: skip

    def steps(page: Any) -> dict[str, Any]:
        log_in(page, live_server.url, "/admin/gateway/requestlog/")
        page.screenshot(path=str(artifacts / "request-log-list.png"), full_page=True)
        return page.evaluate("""() => {
          const results = document.querySelector("#changelist-form .results");
          const box = results.getBoundingClientRect();
          const last = document.querySelector("#result_list thead th:last-child").getBoundingClientRect();
          return {
            viewport: [window.innerWidth, window.innerHeight],
            pageWidth: document.documentElement.scrollWidth,
            box: [box.right, box.bottom],
            lastRight: last.right,
            scrolls: results.scrollWidth > results.clientWidth,
            overflowX: getComputedStyle(results).overflowX,
          };
        }""")

    seen = in_browser(steps)
    width, height = seen["viewport"]
    assert width == 1400
    assert seen["pageWidth"] <= width  # nothing pushes the page wider than the window
    box_right, box_bottom = seen["box"]
    assert box_right <= width
    if seen["lastRight"] > box_right:  # it does not fit: then it scrolls, with its scrollbar on screen
        assert seen["scrolls"] and seen["overflowX"] == "auto"
        assert box_bottom <= height, "the list's horizontal scrollbar is below the window"
