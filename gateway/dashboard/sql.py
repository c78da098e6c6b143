"""Database expressions the dashboard needs that Django does not ship, for PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from django.db.models import (
    Aggregate,
    BigIntegerField,
    Case,
    Expression,
    F,
    FloatField,
    Func,
    IntegerField,
    Value,
    When,
)
from django.db.models.functions import Cast, Floor, Ln

from gateway.dashboard.histogram import LINEAR_LIMIT, LOG_SCALE


class EpochBucket(Func):
    """Epoch seconds of the start of the ``step``-second bucket holding a datetime (UTC, epoch-aligned)."""

    output_field = BigIntegerField()

    def __init__(self, expression: Any, *, step: int) -> None:
        if not isinstance(step, int) or step <= 0:
            raise ValueError("step must be a positive int")
        self.step = step
        super().__init__(expression)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(FLOOR(EXTRACT(EPOCH FROM {sql}) / {self.step}) * {self.step})::bigint", params

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        # Django stores naive UTC text on SQLite; strftime('%s') reads it as UTC.
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(CAST(strftime('%%s', {sql}) AS INTEGER) / {self.step}) * {self.step}", params


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expr)`` (NULLs skipped)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float) -> None:
        super().__init__(expression, fraction=repr(float(fraction)))


def hist_bucket(field: str) -> Expression:
    """``histogram.bucket_of`` in SQL (Django registers LN and FLOOR on SQLite connections)."""
    scaled = Floor(Ln(Cast(F(field), FloatField()) / Value(float(LINEAR_LIMIT))) * Value(LOG_SCALE))
    return Cast(
        Case(
            When(**{f"{field}__lt": LINEAR_LIMIT}, then=Cast(F(field), FloatField())),
            default=Value(float(LINEAR_LIMIT)) + scaled,
            output_field=FloatField(),
        ),
        IntegerField(),
    )
