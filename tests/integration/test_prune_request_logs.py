"""``python manage.py prune_request_logs``: request-log retention by age."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gateway.models import RequestLog

pytestmark = pytest.mark.django_db


def make_log(*, age: timedelta, request_id: str) -> RequestLog:
    created = timezone.now() - age
    return RequestLog.objects.create(
        request_id=request_id, created_at=created, finished_at=created, path="/v1/chat/completions", outcome="ok"
    )


def run(*args: str) -> str:
    out = StringIO()
    call_command("prune_request_logs", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(RequestLog.objects.values_list("request_id", flat=True))


def test_it_deletes_rows_older_than_the_given_days():
    make_log(age=timedelta(days=31), request_id="old")
    make_log(age=timedelta(days=29), request_id="recent")

    output = run("--older-than", "30d")

    assert remaining() == {"recent"}
    assert output.strip() == "deleted 1 request log row(s) older than 30d"


@pytest.mark.parametrize(("age", "kept"), [("12h", {"b", "c"}), ("90m", {"b"}), ("2d", {"a", "b", "c"})])
def test_it_accepts_hours_and_minutes(age, kept):
    make_log(age=timedelta(hours=13), request_id="a")
    make_log(age=timedelta(minutes=30), request_id="b")
    make_log(age=timedelta(minutes=100), request_id="c")

    run("--older-than", age)

    assert remaining() == kept


def test_it_defaults_to_the_retention_setting(settings):
    settings.KIMIPROXY_LOG_RETENTION_DAYS = 7
    make_log(age=timedelta(days=8), request_id="old")
    make_log(age=timedelta(days=6), request_id="recent")

    output = run()

    assert remaining() == {"recent"}
    assert "older than 7d" in output


def test_it_keeps_everything_when_retention_is_off(settings):
    settings.KIMIPROXY_LOG_RETENTION_DAYS = 0
    make_log(age=timedelta(days=800), request_id="ancient")

    assert "nothing deleted" in run()
    assert remaining() == {"ancient"}


@pytest.mark.parametrize("age", ["30", "0d", "-1d", "1w", "1.5d", "soon"])
def test_it_refuses_an_age_it_cannot_read_without_deleting(age):
    make_log(age=timedelta(days=400), request_id="old")

    with pytest.raises(CommandError):
        run("--older-than", age)

    assert remaining() == {"old"}
