"""The request path's database work on PostgreSQL: how many statements each step sends, and what the
one-statement final write leaves behind (gateway/db/finish_sql.py, accounts/pool/pg.py).

Counted with ``connection.execute_wrapper``, which sees every statement Django sends (BEGIN/COMMIT are
protocol-level and are counted by the benchmark from the server log instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts import pool
from accounts.choices import AccountState, TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import pg
from gateway.choices import ConversationState, Outcome
from gateway.models import Conversation, RequestLog
from gateway.records.callers import caller_for_key
from gateway.records.conversations import conversation_record
from gateway.records.logs import (
    ConversationSettlement,
    LeaseSettlement,
    LogFinish,
    LogStart,
    request_finish,
    request_log_accept,
)
from tests.factories import make_account, make_api_key

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the hand-written statements are PostgreSQL SQL"),
]


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if "SAVEPOINT" not in sql:  # the test's own transaction turns atomic() into savepoints
            seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def _request(request_id: str = "r-1") -> tuple[int, pool.Lease, int]:
    """An accepted request with a reserved lease and a recorded chat: (log id, lease, conversation id)."""
    key, _ = make_api_key()
    caller, _ = caller_for_key(key)
    log_id = request_log_accept(caller=caller, start=LogStart(request_id=request_id, path="/v1/chat/completions"))
    lease = pool.account_reserve(request_id=request_id)
    conversation_id = conversation_record(
        account_id=lease.account_id,
        chat_id=f"chat-{request_id}",
        api_key_id=key.pk,
        owner_hash=f"key:{key.pk}",
        request_id=request_id,
    )
    return log_id, lease, conversation_id


def test_the_reservation_is_one_statement() -> None:
    make_account()
    make_account()
    with statements() as seen:
        lease = pool.account_reserve(request_id="r-1")
    assert len(seen) == 1, seen
    assert f"{pg.function_name()}(" in seen[0]
    turn = Turn.objects.get(pk=lease.turn_id)
    assert (turn.status, turn.account_id, turn.request_id) == (TurnStatus.IN_FLIGHT, lease.account_id, "r-1")
    assert KimiAccount.objects.get(pk=lease.account_id).total_turns == 1


def test_a_successful_final_write_is_one_statement_that_writes_everything() -> None:
    make_account()
    log_id, lease, conversation_id = _request()
    KimiAccount.objects.filter(pk=lease.account_id).update(backoff_level=2)  # healed by the success
    finish = LogFinish(status_code=200, outcome=Outcome.OK, latency_ms=12, completion_chars=5, flags=["x"])
    settle = ConversationSettlement(conversation_id=conversation_id, keep=False, deleted=True)

    with statements() as seen:
        assert request_finish(
            log_id=log_id, finish=finish, lease=LeaseSettlement(lease=lease, outcome="ok"), conversation=settle
        )

    assert len(seen) == 1, seen
    row = RequestLog.objects.get(pk=log_id)
    assert (row.outcome, row.status_code, row.latency_ms, row.completion_chars, row.flags) == ("ok", 200, 12, 5, ["x"])
    assert row.finished_at is not None
    turn = Turn.objects.get(pk=lease.turn_id)
    assert (turn.status, turn.outcome) == (TurnStatus.DONE, "ok")
    account = KimiAccount.objects.get(pk=lease.account_id)
    assert (account.state, account.backoff_level, account.cooldown_until) == (AccountState.ACTIVE, 0, None)
    assert not Conversation.objects.filter(pk=conversation_id).exists()  # deleted upstream: row dropped


def test_a_failed_delete_and_a_kept_chat_are_recorded_by_the_same_statement() -> None:
    make_account()
    log_id, lease, conversation_id = _request()
    failed = ConversationSettlement(conversation_id=conversation_id, keep=False, delete_error="unavailable: 503")
    finish = LogFinish(status_code=499, outcome=Outcome.CLIENT_CLOSED, error_code="client_closed")

    with statements() as seen:
        request_finish(
            log_id=log_id,
            finish=finish,
            lease=LeaseSettlement(lease=lease, outcome="client_closed", refund=True),
            conversation=failed,
        )

    assert len(seen) == 1, seen
    row = Conversation.objects.get(pk=conversation_id)
    assert (row.state, row.kept, row.delete_attempts, row.last_error) == (
        ConversationState.DELETE_FAILED,
        False,
        1,
        "unavailable: 503",
    )
    assert Turn.objects.get(pk=lease.turn_id).status == TurnStatus.REFUNDED

    log2, lease2, kept_id = _request("r-2")
    kept = ConversationSettlement(conversation_id=kept_id, keep=True, parent_message_id="msg-9")
    request_finish(log_id=log2, finish=LogFinish(status_code=200, outcome=Outcome.OK), lease=None, conversation=kept)
    row = Conversation.objects.get(pk=kept_id)
    assert (row.state, row.kept, row.parent_message_id) == (ConversationState.KEPT, True, "msg-9")
    assert Turn.objects.get(pk=lease2.turn_id).status == TurnStatus.IN_FLIGHT  # no lease given: untouched


def test_a_final_row_is_written_once_and_nothing_else_changes_the_second_time() -> None:
    make_account()
    log_id, lease, conversation_id = _request()
    first = LogFinish(status_code=200, outcome=Outcome.OK)
    assert request_finish(log_id=log_id, finish=first, lease=LeaseSettlement(lease=lease, outcome="ok"))

    second = LogFinish(status_code=500, outcome=Outcome.UPSTREAM_ERROR, error_code="late")
    settle = ConversationSettlement(conversation_id=conversation_id, keep=False, deleted=True)
    assert not request_finish(log_id=log_id, finish=second, conversation=settle, now=timezone.now())
    assert RequestLog.objects.get(pk=log_id).outcome == Outcome.OK
    assert Conversation.objects.filter(pk=conversation_id).exists()  # left for the sweeper, not dropped
