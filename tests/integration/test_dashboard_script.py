"""static/dashboard/dashboard.js run by node over the page's real JSON, with a recording stand-in for
Chart.js: what each chart is drawn with. (tests/browser/ draws them in chromium, where it is installed.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client

from gateway.choices import Outcome
from gateway.models import RequestLog

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.browser.urlconf"),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]
SCRIPT = Path(__file__).resolve().parents[1] / "node" / "dashboard_charts.mjs"


def drawn_charts(admin_client: Client, tmp_path: Path, range_key: str) -> dict[str, object]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    charts = admin_client.get(f"/dashboard/?range={range_key}").context["report"].charts
    data = tmp_path / "data.json"
    data.write_text(json.dumps(charts))
    out = subprocess.run(["node", str(SCRIPT), str(data)], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("range_key", ["3h", "24h"])
def test_a_lone_hour_of_requests_is_drawn_on_the_latency_chart(admin_client: Client, tmp_path: Path, range_key: str):
    now = now_inside_a_bucket()
    for n in range(14):  # the new user's case: 14 successful requests, all in the current hour
        RequestLog.objects.create(
            request_id=f"r{n}", created_at=now - timedelta(seconds=1, milliseconds=n), outcome=Outcome.OK,
            status_code=200, model="kimi", ttft_ms=400 + n, latency_ms=1500,
        )  # fmt: skip

    drawn = drawn_charts(admin_client, tmp_path, range_key)

    latency = drawn["chart-latency"]
    assert latency != "empty"
    for dataset in latency["data"]["datasets"]:  # type: ignore[index]
        values = [v for v in dataset["data"] if v is not None]
        assert len(values) == 1 and dataset["data"][-1] == values[0]  # in the current (last) bucket
        assert dataset["pointRadius"] > 0  # a line through one value draws nothing: a point shows it
    assert drawn["chart-outcomes"] != "empty"


def test_a_series_with_many_values_is_drawn_as_a_line_without_points(admin_client: Client, tmp_path: Path):
    now = datetime.now(UTC)
    for n in range(4):
        RequestLog.objects.create(
            request_id=f"r{n}", created_at=now - timedelta(hours=n, minutes=1), outcome=Outcome.OK,
            status_code=200, model="kimi", ttft_ms=400, latency_ms=1500,
        )  # fmt: skip

    latency = drawn_charts(admin_client, tmp_path, "24h")["chart-latency"]

    assert all(dataset["pointRadius"] == 0 for dataset in latency["data"]["datasets"])  # type: ignore[index]


def now_inside_a_bucket() -> datetime:
    """Now, at least 2 s after a 5-minute boundary: requests 1 s ago then share the current bucket."""
    now = datetime.now(UTC)
    if now.timestamp() % 300 < 2:
        time.sleep(2)
        now = datetime.now(UTC)
    return now
