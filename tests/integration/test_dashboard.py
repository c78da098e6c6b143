"""The usage dashboard through the test client and its query functions, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.choices import AccountState, TurnStatus
from accounts.models import Turn
from gateway.choices import ConversationState, Outcome
from gateway.dashboard import queries
from gateway.dashboard.pool_usage import leftover_conversations, pool_usage
from gateway.dashboard.ranges import RANGES, range_window
from gateway.dashboard.rollup import rollup_hours
from gateway.kimi.drift import DriftItem
from gateway.models import Conversation, RequestLog
from gateway.records.drift import DriftReport, drift_record
from tests.factories import make_account, make_api_key

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.browser.urlconf"),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),  # whitenoise: no collectstatic in tests
]

NOW = datetime(2026, 3, 10, 12, 3, 0, tzinfo=UTC)
_ids = itertools.count()


def log(at: datetime, outcome: str = Outcome.OK, **fields: object) -> RequestLog:
    defaults: dict[str, object] = {"model": "kimi-k2", "status_code": 200}
    if outcome == Outcome.OK:
        defaults |= {"ttft_ms": 500, "latency_ms": 2000}
    return RequestLog.objects.create(
        request_id=f"req-{next(_ids)}", created_at=at, outcome=outcome, **(defaults | fields)
    )


def test_it_sends_anonymous_and_non_staff_users_to_the_admin_login(client: Client) -> None:
    assert client.get("/dashboard/")["Location"].startswith("/admin/login/")
    User.objects.create_user("carol", password="pw-not-staff-123")
    client.login(username="carol", password="pw-not-staff-123")
    assert client.get("/dashboard/")["Location"].startswith("/admin/login/")


def test_it_renders_every_chart_headline_and_account_row(admin_client: Client) -> None:
    account = make_account(name="alpha", limit=3, window_hours=3)
    key, _ = make_api_key(name="reporting-bot")
    log(datetime.now(UTC) - timedelta(minutes=5), api_key=key, account=account, model="kimi-search")
    log(datetime.now(UTC) - timedelta(minutes=7), api_key=key, account=account, model="kimi-search")
    log(
        datetime.now(UTC) - timedelta(minutes=6), Outcome.UPSTREAM_ERROR, error_code="upstream_timeout", status_code=502
    )
    response = admin_client.get("/dashboard/?range=3h")
    assert response.status_code == 200
    body = response.content.decode()
    for chart in ("outcomes", "latency", "accounts", "errors", "keys", "models"):
        assert f'id="chart-{chart}"' in body
    assert "dashboard/vendor/chart.umd.js" in body and "cdn" not in body.lower()
    charts = response.context["report"].charts
    assert charts["keys"]["labels"] == ["reporting-bot", "pass-through"]
    assert charts["errors"] == {"labels": ["upstream_timeout"], "data": [1]}
    assert charts["keys"]["data"] == [2, 1]
    assert response.context["report"].headline["requests"] == 3
    assert response.context["report"].headline["success_rate"] == 66.7
    assert 'kp-badge kp-badge-active">Active<' in body


def test_local_answers_are_charted_as_their_own_outcome_and_count_as_successes(admin_client: Client) -> None:
    log(datetime.now(UTC) - timedelta(minutes=5))
    log(datetime.now(UTC) - timedelta(minutes=6), Outcome.LOCAL, path="/api/hello")
    log(datetime.now(UTC) - timedelta(minutes=7), Outcome.CLIENT_ERROR, status_code=400)
    report = admin_client.get("/dashboard/?range=3h").context["report"]
    outcomes = {o["key"]: sum(o["data"]) for o in report.charts["outcomes"]}
    assert outcomes[Outcome.LOCAL] == 1 and outcomes[Outcome.OK] == 1
    assert report.headline["requests"] == 3 and report.headline["success_rate"] == 66.7


def test_it_falls_back_to_24_hours_for_an_unknown_range(admin_client: Client) -> None:
    assert admin_client.get("/dashboard/?range=nonsense").context["report"].spec.key == "24h"
    assert admin_client.get("/dashboard/?range=7d").context["report"].spec.key == "7d"


def test_it_counts_requests_by_outcome_in_five_minute_buckets() -> None:
    window = range_window(spec=RANGES["3h"], now=NOW)
    log(NOW - timedelta(minutes=1))
    log(NOW - timedelta(minutes=2), Outcome.RATE_LIMITED, status_code=429)
    log(NOW - timedelta(minutes=11))
    log(NOW - timedelta(minutes=1), Outcome.PENDING)  # still running: not counted
    log(NOW - timedelta(hours=4))  # outside the range
    series = queries.requests_by_outcome(source=queries.source_for(window=window, watermark=None))
    assert series[Outcome.OK][-1] == 1 and series[Outcome.OK][-3] == 1
    assert series[Outcome.RATE_LIMITED][-1] == 1
    assert sum(sum(values) for values in series.values()) == 3
    assert len(series[Outcome.OK]) == len(window.bucket_starts) == 37


def test_it_computes_percentiles_like_percentile_cont() -> None:
    for i, ms in enumerate(range(100, 1001, 100)):
        log(NOW - timedelta(minutes=1, seconds=i), ttft_ms=ms, latency_ms=ms * 10)
    log(NOW - timedelta(minutes=1), Outcome.UPSTREAM_ERROR, latency_ms=5)  # only successes count
    window = range_window(spec=RANGES["3h"], now=NOW)
    result = queries.latency_percentiles(source=queries.source_for(window=window, watermark=None))
    assert result["overall"] == {"ttft_p50": 550.0, "ttft_p95": 955.0, "latency_p50": 5500.0, "latency_p95": 9550.0}
    assert result["ttft_p50"][-1] == 550.0 and result["ttft_p50"][0] is None


def test_it_answers_the_same_from_the_rollup_as_from_raw_rows() -> None:
    key, _ = make_api_key(name="k1")
    for hour in range(1, 20):
        for n in range(hour % 4 + 1):
            at = NOW - timedelta(hours=hour, minutes=7 * n)
            log(at, ttft_ms=300 + 40 * hour + n, latency_ms=3000 + 100 * n, model=f"m{n}", api_key=key)
        log(NOW - timedelta(hours=hour), Outcome.CLIENT_ERROR, error_code=f"e{hour % 3}", status_code=400)
    window = range_window(spec=RANGES["24h"], now=NOW)
    raw = queries.source_for(window=window, watermark=None)
    watermark = NOW.replace(minute=0, second=0) - timedelta(hours=2)
    assert rollup_hours(start=NOW - timedelta(days=2), end=watermark) == 46
    rolled = queries.source_for(window=window, watermark=watermark)
    assert rolled.rolled_until == watermark
    assert queries.requests_by_outcome(source=rolled) == queries.requests_by_outcome(source=raw)
    for dimension in ("error", "model", "api_key"):
        assert queries.dimension_totals(source=rolled, dimension=dimension) == queries.dimension_totals(
            source=raw, dimension=dimension
        )
    exact, merged = queries.latency_percentiles(source=raw), queries.latency_percentiles(source=rolled)
    for name, value in exact["overall"].items():
        assert merged["overall"][name] == pytest.approx(value, rel=0.05)


def test_it_rebuilds_an_hour_without_counting_it_twice() -> None:
    log(NOW - timedelta(hours=3, minutes=10))
    window = range_window(spec=RANGES["24h"], now=NOW)
    watermark = NOW.replace(minute=0, second=0) - timedelta(hours=1)
    rollup_hours(start=NOW - timedelta(hours=5), end=watermark)
    rollup_hours(start=NOW - timedelta(hours=5), end=watermark)
    counts = queries.requests_by_outcome(source=queries.source_for(window=window, watermark=watermark))
    assert sum(counts[Outcome.OK]) == 1


def test_it_rolls_up_only_hours_past_the_grace_period(admin_client: Client) -> None:
    log(datetime.now(UTC) - timedelta(hours=3))
    log(datetime.now(UTC) - timedelta(minutes=1))
    report = admin_client.get("/dashboard/?range=24h").context["report"]
    assert report.rolled_until is not None and report.rolled_until < datetime.now(UTC) - timedelta(minutes=20)
    assert report.headline["requests"] == 2


def test_it_counts_turns_in_each_accounts_own_window() -> None:
    short = make_account(name="short", limit=2, window_hours=1)
    long = make_account(name="long", limit=5, window_hours=3)
    for account, minutes_ago, status in [
        (short, 10, TurnStatus.DONE),
        (short, 50, TurnStatus.IN_FLIGHT),
        (short, 30, TurnStatus.REFUNDED),  # a refund gives the turn back
        (short, 90, TurnStatus.DONE),  # outside short's hour, inside long's window length
        (long, 90, TurnStatus.DONE),
    ]:
        Turn.objects.create(
            account=account, started_at=NOW - timedelta(minutes=minutes_ago), status=status, lease_expires_at=NOW
        )
    usage = {u.name: u for u in pool_usage(now=NOW)}
    assert (usage["short"].used, usage["short"].limit) == (2, 2)
    assert usage["short"].next_free_at == NOW - timedelta(minutes=50) + timedelta(hours=1)
    assert (usage["long"].used, usage["long"].next_free_at) == (1, None)


def test_it_counts_leftover_conversations_awaiting_cleanup() -> None:
    account = make_account(state=AccountState.EXHAUSTED)
    old, fresh = NOW - timedelta(hours=30), NOW - timedelta(hours=1)
    for state, last_used in [
        (ConversationState.PENDING_DELETE, fresh),
        (ConversationState.DELETE_FAILED, fresh),
        (ConversationState.KEPT, old),  # past the 24 h TTL
        (ConversationState.KEPT, fresh),
        (ConversationState.ACTIVE, fresh),
        (ConversationState.DELETED, old),
    ]:
        Conversation.objects.create(account=account, state=state, created_at=old, last_used_at=last_used)
    assert leftover_conversations(now=NOW) == 3


def test_it_shows_upstream_shapes_not_understood_in_the_last_24_hours(admin_client: Client) -> None:
    account = make_account(name="alpha")
    sample = {"op": "merge", "mask": "message.feedback", "note": "<str:5>"}
    recent = (DriftItem("frame", "block.agentArtifact", 3, (sample,)), DriftItem("error", "REASON_FAKE_UNKNOWN", 1))
    drift_record(reports=[DriftReport(account_id=account.pk, protocol="connect", items=recent)])
    old = (DriftItem("frame", "long_gone_kind", 9),)
    drift_record(reports=[DriftReport(account_id=account.pk, protocol="connect", items=old)], now=NOW)

    body = admin_client.get("/dashboard/?range=7d").content.decode()

    panel = body[body.index('id="drift"') : body.index("</table>", body.index('id="drift-table"'))]
    assert "Upstream shapes not understood, last 24 h" in body
    assert "<code>block.agentArtifact</code>" in panel and "<code>REASON_FAKE_UNKNOWN</code>" in panel
    assert "<td>3</td>" in panel and "&quot;message.feedback&quot;" in panel  # the sample, escaped
    assert "&lt;str:5&gt;" in panel and "<str:5>" not in panel
    assert "long_gone_kind" not in panel  # last seen months ago


def test_it_says_when_every_upstream_shape_was_understood(admin_client: Client) -> None:
    body = admin_client.get("/dashboard/").content.decode()

    assert "None: every upstream shape of the last 24 hours was understood." in body


@pytest.mark.parametrize("range_key", ["3h", "24h", "7d", "30d"])
def test_requests_of_the_current_hour_only_are_on_every_chart(admin_client: Client, range_key: str) -> None:
    """14 successful requests in the current hour and none before: every time series has them in its
    last bucket, as the headline does (the latency chart once stayed empty)."""
    now = now_inside_a_bucket()
    for minute in range(14):
        log(now - timedelta(seconds=1, milliseconds=minute))

    report = admin_client.get(f"/dashboard/?range={range_key}").context["report"]

    assert report.headline["requests"] == 14 and report.headline["ttft_p50"] == 500
    charts = report.charts
    assert len(charts["labels"]) == len(charts["outcomes"][0]["data"]) == len(charts["latency"]["ttft_p50"])
    ok = next(o for o in charts["outcomes"] if o["key"] == Outcome.OK)
    assert ok["data"][-1] == 14 and sum(ok["data"]) == 14
    for series in ("ttft_p50", "ttft_p95", "latency_p50", "latency_p95"):
        assert charts["latency"][series][-1] is not None, series
        assert [v for v in charts["latency"][series] if v is not None] == [charts["latency"][series][-1]]


def now_inside_a_bucket() -> datetime:
    """Now, at least 2 s after a 5-minute boundary: requests 1 s ago then share the current bucket."""
    now = datetime.now(UTC)
    if now.timestamp() % 300 < 2:
        time.sleep(2)
        now = datetime.now(UTC)
    return now


def test_it_shows_the_tool_call_success_rate_per_key_and_per_model(admin_client: Client) -> None:
    agent, _ = make_api_key(name="agent-bot")
    other, _ = make_api_key(name="chat-bot")
    at = datetime.now(UTC) - timedelta(minutes=5)
    tools = {"tools_declared": 3}
    log(at, api_key=agent, model="kimi-k2", tool_block_seen=True, tool_outcome="tool_calls", tool_calls=1, **tools)
    log(at, api_key=agent, model="kimi-k2", tool_block_seen=True, tool_outcome="tool_calls", repairs=1, **tools)
    log(at, api_key=agent, model="kimi-k2", tool_block_seen=True, tool_outcome="text", **tools)  # block dropped
    log(at, Outcome.UPSTREAM_ERROR, api_key=agent, model="kimi-k3", tool_outcome="tool_call_missing", **tools)
    log(at, api_key=agent, model="kimi-k3", tool_outcome="text", **tools)  # answered in text: not attempted
    log(at, api_key=other, model="kimi-k3", tool_outcome="text", **tools)
    log(at, api_key=other, model="kimi-k3")  # no tools: not counted at all

    response = admin_client.get("/dashboard/?range=3h")

    by_key = {t.label: t for t in response.context["report"].tools_by_key}
    assert (by_key["agent-bot"].requests, by_key["agent-bot"].attempted, by_key["agent-bot"].succeeded) == (5, 4, 2)
    assert (by_key["agent-bot"].rate, by_key["agent-bot"].repaired) == (50.0, 1)
    assert (by_key["chat-bot"].requests, by_key["chat-bot"].attempted, by_key["chat-bot"].rate) == (1, 0, None)
    by_model = {t.label: t for t in response.context["report"].tools_by_model}
    assert (by_model["kimi-k2"].rate, by_model["kimi-k3"].rate) == (66.7, 0.0)
    assert by_model["kimi-k3"].requests == 3
    page = response.content.decode()
    assert 'data-tools="key:agent-bot"' in page and "50.0 %" in page and "66.7 %" in page
    assert "parse outcome <code>tool_calls</code>" in page  # the page says what success means


def test_it_says_when_no_request_declared_tools(admin_client: Client) -> None:
    log(datetime.now(UTC) - timedelta(minutes=5))
    page = admin_client.get("/dashboard/?range=3h").content.decode()
    assert "No request in this range declared tools." in page


def test_it_shows_the_share_of_native_multi_turn_and_the_characters_not_sent(admin_client: Client) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    log(at, turn_path="native", prompt_bytes_saved=40_000)
    log(at, turn_path="native", prompt_bytes_saved=2_000)
    log(at, turn_path="flattened")
    log(at)  # the mode off: not counted

    response = admin_client.get("/dashboard/?range=3h")

    native = response.context["report"].native
    assert (native.requests, native.native, native.flattened, native.bytes_saved) == (3, 2, 1, 42_000)
    assert native.share == 66.7
    page = response.content.decode()
    assert 'data-native="2"' in page and "66.7 %" in page and "41.0\xa0KB" in page
