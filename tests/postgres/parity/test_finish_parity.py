"""The request's final write decides alike on both paths: the ORM reference (gateway/records/logs.py
``request_finish_orm``: log row, ``lease_release``, conversation settled) and the one statement of
gateway/db/finish_sql.py, on the same generated data, for every lease outcome.

Each example sets up a request (its log row pending or already final), its lease (in flight or already
released; the account in any state, cooling or backed off), its conversation (kept, deleted upstream,
failed delete, queued) and a final result, then runs each path in a savepoint that is rolled back and
compares what it returned and every row of the four tables. Outcomes the statement does not take (they
need the account read first: rules.ONE_STATEMENT_EFFECTS) must go to the ORM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from accounts.choices import AccountState, LeaseOutcome, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import Lease, rules
from gateway.choices import Outcome
from gateway.db import finish_sql
from gateway.models import ApiKey, Conversation, RequestLog
from gateway.records import logs
from gateway.records.settlements import ConversationSettlement, LeaseSettlement, LogFinish, ToolRecord

pytestmark = [pytest.mark.postgres]
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RELEASABLE = sorted(rules.OUTCOME_EFFECTS)
ONE_STATEMENT = sorted(o for o, effect in rules.OUTCOME_EFFECTS.items() if effect in rules.ONE_STATEMENT_EFFECTS)


@dataclasses.dataclass(frozen=True)
class Case:
    log_pending: bool
    with_lease: bool
    lease_outcome: str
    refund: bool
    turn_in_flight: bool
    account_state: str
    account_cooldown: int | None
    account_backoff: int
    conversation: str  # none, queued, kept, deleted, failed
    parent_message_id: str
    finish: LogFinish


finishes = st.builds(
    LogFinish,
    status_code=st.sampled_from([200, 400, 429, 499, 502]),
    outcome=st.sampled_from([o for o in Outcome.values if o != Outcome.PENDING]),
    error_code=st.sampled_from(["", "overloaded", "x" * 70]),
    error_message=st.sampled_from(["", "it failed", "m" * 600]),
    latency_ms=st.none() | st.integers(0, 10_000),
    ttft_ms=st.none() | st.integers(0, 10_000),
    attempts=st.integers(0, 3),
    completion_chars=st.integers(0, 100),
    prompt_tokens=st.integers(0, 100),
    completion_tokens=st.integers(0, 100),
    upstream_chat_id=st.sampled_from(["", "chat-1", "c" * 70]),
    answer_preview=st.sampled_from(["", "hello", "a" * 300]),
    flags=st.none() | st.lists(st.sampled_from(["search", "ignored:thinking"]), max_size=2),
    tools=st.builds(
        ToolRecord,
        declared=st.integers(0, 40_000),
        block_seen=st.booleans(),
        outcome=st.sampled_from(["", "text", "tool_calls", "tool_call_malformed", "t" * 30]),
        calls=st.integers(0, 3),
        unknown_names=st.lists(st.sampled_from(["delete_all", "n" * 120, 'qu"o\\te']), max_size=12).map(tuple),
    ),
    repairs=st.integers(0, 2),
    turn_path=st.sampled_from(["", "native", "flattened"]),
    prompt_bytes_saved=st.integers(0, 100_000),
)
cases = st.builds(
    Case,
    log_pending=st.sampled_from([True, True, True, False]),
    with_lease=st.sampled_from([True, True, True, False]),
    lease_outcome=st.sampled_from(RELEASABLE) | st.sampled_from(ONE_STATEMENT),  # mostly the statement's
    refund=st.booleans(),
    turn_in_flight=st.sampled_from([True, True, True, False]),
    account_state=st.sampled_from(AccountState.values),
    account_cooldown=st.none() | st.sampled_from([-60, 60]),
    account_backoff=st.sampled_from([0, 0, 2]),
    conversation=st.sampled_from(["none", "queued", "kept", "deleted", "failed"]),
    parent_message_id=st.sampled_from(["", "msg-9"]),
    finish=finishes,
)


def build(case: Case) -> dict[str, Any]:
    """The rows of one request about to finish; returns the arguments of both paths."""
    key = ApiKey.objects.create(name="k", key_hash="h" * 64, prefix="kp-x")
    account = KimiAccount.objects.create(
        name="acct",
        state=case.account_state,
        cooldown_until=None if case.account_cooldown is None else NOW + timedelta(seconds=case.account_cooldown),
        backoff_level=case.account_backoff,
        last_used_at=NOW - timedelta(minutes=1),
    )
    Turn.objects.create(  # an earlier turn: counted, so an exhaustion without retry time has a window end
        account=account, started_at=NOW - timedelta(minutes=30), status=TurnStatus.DONE, lease_expires_at=NOW
    )
    turn = Turn.objects.create(
        account=account,
        started_at=NOW - timedelta(seconds=5),
        lease_expires_at=NOW + timedelta(minutes=5),
        status=TurnStatus.IN_FLIGHT if case.turn_in_flight else TurnStatus.DONE,
        released_at=None if case.turn_in_flight else NOW - timedelta(seconds=1),
        outcome="" if case.turn_in_flight else LeaseOutcome.OK,
    )
    log = RequestLog.objects.create(
        request_id="r-1",
        created_at=NOW - timedelta(seconds=5),
        api_key=key,
        flags=["search"],
        **({} if case.log_pending else {"outcome": Outcome.OK, "status_code": 200, "finished_at": NOW}),
    )
    conversation = None
    if case.conversation != "none":
        row = Conversation.objects.create(
            account=account, chat_id="chat-1", api_key=key, created_at=NOW, last_used_at=NOW, parent_message_id="m-1"
        )
        conversation = ConversationSettlement(
            conversation_id=row.pk,
            keep=case.conversation == "kept",
            parent_message_id=case.parent_message_id,
            deleted=case.conversation == "deleted",
            delete_error="unavailable: 503" if case.conversation == "failed" else "",
        )
    lease = None
    if case.with_lease:
        lease = LeaseSettlement(
            lease=Lease(turn_id=turn.pk, account_id=account.pk, protocol=account.protocol, account_name=account.name),
            outcome=case.lease_outcome,
            refund=case.refund,
            retry_after=None,
            message=case.finish.error_message,
        )
    return {"log_id": log.pk, "finish": case.finish, "lease": lease, "conversation": conversation, "now": NOW}


def fields(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def database() -> dict[str, list[dict[str, Any]]]:
    tables = (RequestLog, Turn, KimiAccount, Conversation)
    return {m.__name__: [fields(r) for r in m.objects.order_by("pk")] for m in tables}


def run(path: Callable[..., bool], **kwargs: Any) -> tuple[bool, dict[str, list[dict[str, Any]]]]:
    sid = transaction.savepoint()
    try:
        return path(**kwargs), database()
    finally:
        transaction.savepoint_rollback(sid)


def statement(*, log_id: int, finish: LogFinish, **kwargs: Any) -> bool:
    """The one statement, with the log fields the dispatcher in gateway/records/logs.py gives it."""
    log_fields = logs._statement_log_fields(logs._finish_fields(finish), log_id=log_id, flags=finish.flags)
    return finish_sql.request_finish_statement(log_fields=log_fields, **kwargs)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement final write is PostgreSQL SQL")
class FinishParityTest(TestCase):
    @settings(max_examples=150, deadline=None)
    @given(case=cases)
    def test_the_orm_and_the_statement_write_alike(self, case: Case) -> None:
        kwargs = build(case)
        lease = kwargs["lease"]

        by_orm, orm_rows = run(logs.request_finish_orm, **kwargs)

        if not finish_sql.fast_path_applies(lease):
            event("error outcome: the ORM's")
            assert rules.effect_of(lease.outcome) not in rules.ONE_STATEMENT_EFFECTS
            by_dispatch, dispatch_rows = run(logs.request_finish, **kwargs)
            assert (by_dispatch, dispatch_rows) == (by_orm, orm_rows)
            return
        event(f"one statement: {lease.outcome if lease else 'no lease'}")
        by_sql, sql_rows = run(statement, **kwargs)
        assert by_sql == by_orm == case.log_pending
        assert sql_rows == orm_rows

    def test_every_releasable_outcome_has_an_effect_and_the_one_statement_ones_are_in_the_table(self) -> None:
        releasable = set(LeaseOutcome.values) - {LeaseOutcome.LEASE_EXPIRED}
        assert set(rules.OUTCOME_EFFECTS) == releasable
        assert {rules.effect_of(o) for o in releasable} >= rules.ONE_STATEMENT_EFFECTS
