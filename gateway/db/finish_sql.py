"""A request's final write on PostgreSQL as one statement: log row, lease, account, conversation.

Why it exists: it runs once per request, and the ORM version (``gateway/records/logs.py::request_finish``: a
transaction of three or four statements) cost more CPU to build than Postgres took to run. One
statement with data-modifying CTEs is atomic on its own, so it needs no BEGIN/COMMIT either.

It covers the lease outcomes whose account change needs no read of the account (accounts/pool/rules.py
``ONE_STATEMENT_EFFECTS``: healing on ``ok``, nothing for the client's outcomes); error outcomes, which
set cooldowns and backoff, take the ORM path. The release's rules (which status a refund writes, the
healed columns, the states a heal spares) are rendered from rules.py, the table the ORM's
``lease_release`` applies; tests/postgres/parity/test_finish_parity.py compares the two. Like the ORM
path, nothing but the log row changes when the row was already final.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from accounts.choices import TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import rules
from accounts.pool.pg import assignments, literal, literal_list, matches
from gateway.choices import Outcome
from gateway.db import eventloop, run
from gateway.models import Conversation, RequestLog
from gateway.records.conversations import conversation_settled_state
from gateway.records.settlements import ConversationSettlement, LeaseSettlement

LOG, TURN, ACCOUNT, CONVERSATION = (m._meta.db_table for m in (RequestLog, Turn, KimiAccount, Conversation))

_LOG = (
    f"log AS (UPDATE {LOG} SET finished_at = %(now)s, status_code = %(status_code)s, outcome = %(outcome)s,"
    " error_code = %(error_code)s, error_message = %(error_message)s, latency_ms = %(latency_ms)s,"
    " ttft_ms = %(ttft_ms)s, attempts = %(attempts)s, account_id = %(account_id)s,"
    " completion_chars = %(completion_chars)s, prompt_tokens = %(prompt_tokens)s,"
    " completion_tokens = %(completion_tokens)s, upstream_chat_id = %(upstream_chat_id)s,"
    " answer_preview = %(answer_preview)s, flags = COALESCE(%(flags)s::jsonb, flags),"
    " tools_declared = %(tools_declared)s, tool_block_seen = %(tool_block_seen)s, tool_outcome = %(tool_outcome)s,"
    " tool_calls = %(tool_calls)s, tool_unknown_names = %(tool_unknown_names)s::jsonb, repairs = %(repairs)s,"
    " turn_path = %(turn_path)s, prompt_bytes_saved = %(prompt_bytes_saved)s"
    f" WHERE id = %(log_id)s AND outcome = {literal(Outcome.PENDING)} RETURNING id)"
)
_TURN = (
    f"turn AS (UPDATE {TURN} SET status = %(turn_status)s, released_at = %(now)s, outcome = %(lease_outcome)s"
    f" WHERE id = %(turn_id)s AND status = {literal(TurnStatus.IN_FLIGHT)} AND EXISTS (SELECT 1 FROM log)"
    " RETURNING account_id)"
)
# A healing outcome heals its account, writing nothing when it is already healthy.
_HEAL = (
    f"heal AS (UPDATE {ACCOUNT} SET {assignments(rules.HEALED)}, updated_at = %(now)s"
    " WHERE id IN (SELECT account_id FROM turn)"
    f" AND state NOT IN {literal_list(rules.SPARED_STATES[rules.Effect.HEAL])} AND NOT ({matches(rules.HEALED)})"
    f" AND NOT (state = {literal(rules.HEAL_SPARES_UNTIL_AHEAD)} AND COALESCE(cooldown_until > %(now)s, FALSE)))"
)
_CONVERSATION_DELETED = (
    f"conv AS (DELETE FROM {CONVERSATION} WHERE id = %(conversation_id)s AND EXISTS (SELECT 1 FROM log))"
)
_CONVERSATION_SETTLED = (
    f"conv AS (UPDATE {CONVERSATION} SET state = %(conversation_state)s, kept = %(keep)s,"
    " last_used_at = %(now)s, parent_message_id = COALESCE(NULLIF(%(parent_message_id)s, ''), parent_message_id),"
    " last_error = CASE WHEN %(delete_error)s = '' THEN last_error ELSE %(delete_error)s END,"
    " delete_attempts = delete_attempts + CASE WHEN %(delete_error)s = '' THEN 0 ELSE 1 END,"
    " claimed_until = CASE WHEN %(delete_error)s = '' THEN claimed_until ELSE NULL END"
    " WHERE id = %(conversation_id)s AND EXISTS (SELECT 1 FROM log))"
)


def fast_path_applies(lease: LeaseSettlement | None) -> bool:
    return eventloop.is_postgresql() and (
        lease is None or rules.effect_of(lease.outcome) in rules.ONE_STATEMENT_EFFECTS
    )


def _finish_statement(
    *,
    log_fields: dict[str, object],
    lease: LeaseSettlement | None,
    conversation: ConversationSettlement | None,
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    parts = [_LOG]
    params: dict[str, Any] = {**log_fields, "now": now}
    if lease is not None:
        parts.append(_TURN)
        params.update(
            turn_id=lease.lease.turn_id,
            turn_status=rules.released_status(refund=lease.refund).value,
            lease_outcome=lease.outcome,
        )
        if rules.effect_of(lease.outcome) is rules.Effect.HEAL:
            parts.append(_HEAL)
    if conversation is not None:
        params["conversation_id"] = conversation.conversation_id
        if conversation.deleted and not conversation.keep:
            parts.append(_CONVERSATION_DELETED)
        else:
            parts.append(_CONVERSATION_SETTLED)
            delete_error = "" if conversation.keep else conversation.delete_error[:300]
            params.update(
                conversation_state=conversation_settled_state(keep=conversation.keep, delete_error=delete_error),
                keep=conversation.keep,
                parent_message_id=conversation.parent_message_id,
                delete_error=delete_error,
            )
    return "WITH " + ", ".join(parts) + " SELECT count(*) FROM log", params


def request_finish_statement(
    *,
    log_fields: dict[str, object],
    lease: LeaseSettlement | None,
    conversation: ConversationSettlement | None,
    now: datetime,
) -> bool:
    """Run the final write; True when the log row was still pending (and so everything was written)."""
    sql, params = _finish_statement(log_fields=log_fields, lease=lease, conversation=conversation, now=now)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return bool(row and row[0])


async def request_finish_statement_async(
    *,
    log_fields: dict[str, object],
    lease: LeaseSettlement | None,
    conversation: ConversationSettlement | None,
    now: datetime,
) -> bool:
    """``request_finish_statement`` from async code (the statement's path is gateway/db/run.py's choice)."""
    sql, params = _finish_statement(log_fields=log_fields, lease=lease, conversation=conversation, now=now)
    row = await run.fetchone(sql, params)
    return bool(row and row[0])
