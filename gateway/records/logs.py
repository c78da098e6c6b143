"""Request-log services: a row is created when a request is accepted (or rejected), and finalised
exactly once, in the same transaction that releases the account lease and settles the conversation.

Per-key limits (requests per minute, concurrent requests, upstream turns per day) are checked in the
accept transaction under a row lock on the key, counting the key's own log rows (and their turns), so
they hold across processes and replicas sharing the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import limits
from accounts.choices import TurnStatus
from accounts.models import KimiAccount, Turn
from accounts.pool import lease_release
from gateway.choices import Outcome
from gateway.db import finish_sql
from gateway.db.threads import db_call
from gateway.models import ApiKey, RequestLog
from gateway.openai.errors import GatewayError, QuotaExceeded, RateLimitExceeded
from gateway.records.callers import Caller
from gateway.records.conversations import conversation_settle
from gateway.records.settlements import ConversationSettlement, LeaseSettlement, LogFinish

PREVIEW_CHARS = 200


def db_text(text: str) -> str:
    """Text a log column can hold on every database: PostgreSQL refuses NUL characters in text, and a
    client may send them (a model name, a user field, a prompt)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@dataclasses.dataclass(frozen=True)
class LogStart:
    request_id: str
    path: str
    model: str = ""
    flags: tuple[str, ...] = ()
    stream: bool = False
    client_ip: str | None = None
    user: str = ""
    prompt_chars: int = 0
    prompt_preview: str = ""

    def __post_init__(self) -> None:
        for name in ("path", "model", "user", "prompt_preview"):
            object.__setattr__(self, name, db_text(getattr(self, name)))
        object.__setattr__(self, "flags", tuple(db_text(flag) for flag in self.flags))


def _preview(text: str) -> str:
    return text[:PREVIEW_CHARS] if settings.KIMIPROXY_LOG_PREVIEWS else ""


def request_log_accept(*, caller: Caller, start: LogStart, now: datetime | None = None) -> int:
    """Create the log row of an accepted request and return its id.

    Raises ``RateLimitExceeded`` when the caller is over its requests-per-minute or concurrent-request
    limit, ``QuotaExceeded`` when a key is over its turns per day; the rejected request still gets its
    (final) log row.
    """
    now = now or timezone.now()
    limited = caller.rpm_limit is not None or caller.max_concurrent is not None or caller.turns_per_day is not None
    # A transaction (and the key's row lock inside it) only when there is a limit to check.
    with transaction.atomic() if limited else contextlib.nullcontext():
        refusal = _limit_refusal(caller=caller, now=now) if limited else None
        fields = request_log_accept_fields(
            start=start,
            now=now,
            api_key_id=caller.api_key_id,
            passthrough_hash="" if caller.api_key_id else caller.owner_hash,
        )
        if refusal is not None:  # the refused request's row is final at once
            fields.update(
                finished_at=now,
                status_code=refusal.status,
                outcome=Outcome.RATE_LIMITED,  # the dashboard's group of 429s, whichever limit it was
                error_code=refusal.code,
                error_message=refusal.message[:500],
                latency_ms=0,
            )
        row = RequestLog.objects.create(**fields)
    if refusal is not None:
        raise refusal
    return row.pk


def request_log_accept_fields(
    *, start: LogStart, now: datetime, api_key_id: int | None, passthrough_hash: str
) -> dict[str, Any]:
    """The fields an accepted request's (pending) log row is created with, by field name; the other
    fields keep their defaults. gateway/db/accept_sql.py writes the same row in SQL."""
    return {
        "request_id": start.request_id,
        "created_at": now,
        "api_key_id": api_key_id,
        "passthrough_hash": passthrough_hash,
        "path": start.path,
        "model": start.model,
        "flags": list(start.flags),
        "stream": start.stream,
        "client_ip": start.client_ip,
        "user": start.user[:200],
        "prompt_chars": start.prompt_chars,
        "prompt_preview": _preview(start.prompt_preview),
    }


def _limit_refusal(*, caller: Caller, now: datetime) -> GatewayError | None:
    logs = RequestLog.objects.all()
    if caller.api_key_id is not None:
        # The row lock serialises this key's accepts across processes, so the count below is exact.
        list(ApiKey.objects.select_for_update().filter(pk=caller.api_key_id).values_list("pk"))
        logs = logs.filter(api_key_id=caller.api_key_id)
    else:
        ids = caller.passthrough_account_ids
        list(KimiAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
        logs = logs.filter(passthrough_hash=caller.owner_hash)
    if caller.rpm_limit is not None:
        minute_ago = now - timedelta(seconds=60)
        # Refused requests do not count, or a client retrying too fast would lock itself out for good.
        counted = logs.filter(created_at__gt=minute_ago).exclude(outcome=Outcome.RATE_LIMITED)
        recent = list(counted.order_by("created_at").values_list("created_at", flat=True))
        if len(recent) >= caller.rpm_limit:
            oldest = recent[-caller.rpm_limit]
            retry_after = max(1.0, (oldest + timedelta(seconds=60) - now).total_seconds())
            return RateLimitExceeded(
                f"Rate limit reached: {caller.rpm_limit} requests per minute for this key.",
                retry_after=retry_after,
            )
    if caller.max_concurrent is not None:
        stale = now - timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT)
        open_now = logs.filter(outcome=Outcome.PENDING, created_at__gt=stale).count()
        if open_now >= caller.max_concurrent:
            return RateLimitExceeded(
                f"Too many concurrent requests: {caller.max_concurrent} allowed for this key.",
                retry_after=1.0,
            )
    if caller.turns_per_day is not None and caller.api_key_id is not None:
        return _budget_refusal(api_key_id=caller.api_key_id, budget=caller.turns_per_day, now=now)
    return None


# A key's turn budget counts over a rolling day.
BUDGET_WINDOW_SECONDS = 24 * 3600


def key_turn_starts(*, api_key_id: int, now: datetime) -> list[datetime]:
    """When the key's counted upstream turns of the last 24 hours started: its requests' ``Turn`` rows
    (one per upstream attempt, by request id), refunded ones left out (the upstream did no work), so a
    request answered locally or refused before an account counts nothing."""
    since = limits.window_start(now=now, window_seconds=BUDGET_WINDOW_SECONDS)
    # A turn starts after its request's log row; a request may run up to the lease timeout.
    requests = RequestLog.objects.filter(
        api_key_id=api_key_id, created_at__gt=since - timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT)
    ).values("request_id")
    turns = Turn.objects.filter(started_at__gt=since, request_id__in=requests).exclude(status=TurnStatus.REFUNDED)
    return list(turns.values_list("started_at", flat=True))


def _budget_refusal(*, api_key_id: int, budget: int, now: datetime) -> QuotaExceeded | None:
    starts = key_turn_starts(api_key_id=api_key_id, now=now)
    if len(starts) < budget:
        return None
    # When enough of its turns have left the rolling day for one more to fit (accounts/limits.py).
    free_at = limits.available_at(
        counted_starts=starts, limit=budget, window_seconds=BUDGET_WINDOW_SECONDS, now=now
    ) or now + timedelta(seconds=BUDGET_WINDOW_SECONDS)
    retry_after = max(1.0, (free_at - now).total_seconds())
    return QuotaExceeded(
        f"This key has used its budget of {budget} upstream turns in 24 hours; the next turn frees up at "
        f"{free_at:%Y-%m-%d %H:%M} UTC.",
        retry_after=retry_after,
    )


def request_log_reject(
    *,
    start: LogStart,
    api_key_id: int | None,
    status_code: int,
    error_code: str,
    message: str,
    now: datetime | None = None,
) -> None:
    """Log a request refused before it was accepted (bad key, bad body): one final row."""
    now = now or timezone.now()
    RequestLog.objects.create(
        request_id=start.request_id,
        created_at=now,
        finished_at=now,
        api_key_id=api_key_id,
        path=start.path,
        model=start.model,
        stream=start.stream,
        client_ip=start.client_ip,
        status_code=status_code,
        outcome=Outcome.CLIENT_ERROR if status_code < 500 and status_code != 429 else Outcome.RATE_LIMITED,
        error_code=db_text(error_code),
        error_message=db_text(message[:500]),
        latency_ms=0,
    )


def request_log_local(
    *,
    request_id: str,
    path: str,
    client_ip: str | None,
    api_key_id: int | None = None,
    flags: tuple[str, ...] = (),
    now: datetime | None = None,
) -> None:
    """Log housekeeping the gateway answered itself (a client's connectivity check; reading or deleting
    a stored response): one final row, outcome ``local``, no account, no turn."""
    now = now or timezone.now()
    RequestLog.objects.create(
        request_id=request_id,
        created_at=now,
        finished_at=now,
        api_key_id=api_key_id,
        path=path[:100],
        flags=list(flags),
        client_ip=client_ip,
        status_code=200,
        outcome=Outcome.LOCAL,
        latency_ms=0,
    )


def request_finish(
    *,
    log_id: int,
    finish: LogFinish,
    lease: LeaseSettlement | None = None,
    conversation: ConversationSettlement | None = None,
    now: datetime | None = None,
) -> bool:
    """Finalise the log row, release the lease and settle the conversation, in one transaction.

    Returns False when the row was already final (a second finisher lost the race): nothing changes.
    On PostgreSQL the common outcomes are one statement (gateway/db/finish_sql.py).
    """
    now = now or timezone.now()
    if finish_sql.fast_path_applies(lease):
        return finish_sql.request_finish_statement(
            log_fields=_statement_log_fields(_finish_fields(finish), log_id=log_id, flags=finish.flags),
            lease=lease,
            conversation=conversation,
            now=now,
        )
    return request_finish_orm(log_id=log_id, finish=finish, lease=lease, conversation=conversation, now=now)


def request_finish_orm(
    *,
    log_id: int,
    finish: LogFinish,
    lease: LeaseSettlement | None,
    conversation: ConversationSettlement | None,
    now: datetime,
) -> bool:
    """``request_finish`` on the ORM: the reference the one statement (gateway/db/finish_sql.py) follows."""
    fields = _finish_fields(finish)
    with transaction.atomic():
        updated = RequestLog.objects.filter(pk=log_id, outcome=Outcome.PENDING).update(
            finished_at=now, **fields, **({"flags": finish.flags} if finish.flags is not None else {})
        )
        if updated != 1:
            return False
        if lease is not None:
            lease_release(
                lease=lease.lease,
                outcome=lease.outcome,
                refund=lease.refund,
                retry_after=lease.retry_after,
                message=lease.message,
                reset_at=lease.reset_at,
                quota=lease.quota,
                now=now,
            )
        if conversation is not None:
            conversation_settle(
                conversation_id=conversation.conversation_id,
                keep=conversation.keep,
                parent_message_id=conversation.parent_message_id,
                deleted=conversation.deleted,
                delete_error=conversation.delete_error,
                now=now,
            )
    return True


async def request_finish_async(
    *,
    log_id: int,
    finish: LogFinish,
    lease: LeaseSettlement | None = None,
    conversation: ConversationSettlement | None = None,
) -> bool:
    """``request_finish`` from async code: the one-statement outcomes on PostgreSQL
    (gateway/db/finish_sql.py, run where gateway/db/run.py chooses), everything else through the ORM in a
    worker thread."""
    if not finish_sql.fast_path_applies(lease):
        return await db_call(request_finish, log_id=log_id, finish=finish, lease=lease, conversation=conversation)
    return await finish_sql.request_finish_statement_async(
        log_fields=_statement_log_fields(_finish_fields(finish), log_id=log_id, flags=finish.flags),
        lease=lease,
        conversation=conversation,
        now=timezone.now(),
    )


def _finish_fields(finish: LogFinish) -> dict[str, object]:
    """The log row's final columns (without finished_at and flags)."""
    return {
        "status_code": finish.status_code,
        "outcome": finish.outcome,
        "error_code": db_text(finish.error_code[:64]),
        "error_message": db_text(finish.error_message[:500]),
        "latency_ms": finish.latency_ms,
        "ttft_ms": finish.ttft_ms,
        "attempts": finish.attempts,
        "account_id": finish.account_id,
        "completion_chars": finish.completion_chars,
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "upstream_chat_id": finish.upstream_chat_id[:64],
        "answer_preview": db_text(_preview(finish.answer_preview)),
        "tools_declared": min(finish.tools.declared, 32767),
        "tool_block_seen": finish.tools.block_seen,
        "tool_outcome": finish.tools.outcome[:24],
        "tool_calls": min(finish.tools.calls, 32767),
        "tool_unknown_names": [name[:100] for name in finish.tools.unknown_names[:10]],
        "repairs": finish.repairs,
        "turn_path": finish.turn_path[:16],
        "prompt_bytes_saved": max(0, finish.prompt_bytes_saved),
    }


def _statement_log_fields(fields: dict[str, object], *, log_id: int, flags: list[str] | None) -> dict[str, object]:
    return {
        **fields,
        "log_id": log_id,
        "flags": json.dumps(flags) if flags is not None else None,
        "tool_unknown_names": json.dumps(fields["tool_unknown_names"]),
    }


def request_logs_prune(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete log rows older than ``older_than`` (retention); returns how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = RequestLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def request_logs_close_abandoned(*, now: datetime | None = None) -> int:
    """Finalise log rows still pending past the lease timeout: their process died mid-request."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.KIMIPROXY_LEASE_TIMEOUT)
    return RequestLog.objects.filter(outcome=Outcome.PENDING, created_at__lt=cutoff).update(
        finished_at=now,
        outcome=Outcome.UPSTREAM_ERROR,
        status_code=500,
        error_code="abandoned",
        error_message="the gateway process handling this request stopped before it finished",
    )
