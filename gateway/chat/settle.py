"""How a request and its leases end: the one mapping from an upstream failure to the lease's fate.

Two vocabularies, kept apart: a **lease outcome** (``accounts.choices.LeaseOutcome``) says what an
attempt did to the account (the pool's rules turn it into a cooldown, ``exhausted``, ``invalid`` or
healing, accounts/pool/rules.py), and the
request's **log outcome** (``gateway.choices.Outcome``) says how the request ended, for the dashboard.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from accounts.choices import LeaseOutcome
from gateway.choices import Outcome
from gateway.kimi.base import BadRequest, FileRejected, KimiError, RateLimited, UpstreamTimeout
from gateway.openai.errors import GatewayError


def lease_outcome(exc: KimiError) -> LeaseOutcome:
    """The pool's name for how an attempt failed (what the account gets is accounts/pool/rules.py's table).

    Every timeout is one outcome, a refused file or a too-long prompt is the client's bad request; every
    other upstream error's ``code`` is a lease outcome of the same name (a bare KimiError's is
    ``upstream_error``).
    """
    if isinstance(exc, UpstreamTimeout):
        return LeaseOutcome.TIMEOUT
    if isinstance(exc, BadRequest | FileRejected):
        return LeaseOutcome.BAD_REQUEST
    return LeaseOutcome(exc.code)


@dataclasses.dataclass(frozen=True)
class LeaseEnd:
    """What becomes of one attempt's lease: its outcome for the pool, whether the turn is given back,
    and for a rate limit the upstream's retry time (``reset_at`` or ``retry_after``) and whether it
    refused for quota (``quota``: evidence of the account's limit, kimi-web-protocol.md C.13)."""

    outcome: LeaseOutcome = LeaseOutcome.OK
    refund: bool = False
    retry_after: float | None = None
    message: str = ""
    reset_at: datetime | None = None
    quota: bool = False

    def release_kwargs(self) -> dict[str, Any]:
        """These fields as keyword arguments of ``lease_release`` and ``LeaseSettlement`` (same names)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def lease_end_for(exc: KimiError | None, *, generated: bool, message: str = "") -> LeaseEnd:
    """The lease's end after ``exc`` (None: no upstream failure). A turn is refunded only when the
    failure says the upstream did no work *and* no answer content arrived."""
    if exc is None:
        return LeaseEnd(message=message)
    return LeaseEnd(
        outcome=lease_outcome(exc),
        refund=exc.refundable and not generated,
        retry_after=getattr(exc, "retry_after", None),  # rate limits (and any error that carries one)
        message=message or exc.message,
        reset_at=exc.reset_at if isinstance(exc, RateLimited) else None,
        quota=isinstance(exc, RateLimited) and exc.quota,
    )


def log_outcome(status: int) -> str:
    if status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status < 500:
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR


@dataclasses.dataclass(frozen=True)
class Ending:
    """How the request ended, for the final write: its log fields and, when an upstream failure ended
    it, that failure (``cause``) for the lease."""

    status: int
    outcome: str
    error_code: str = ""
    error_message: str = ""
    cause: KimiError | None = None
    client_closed: bool = False

    def lease_end(self, *, generated: bool) -> LeaseEnd:
        if self.client_closed:
            return LeaseEnd(outcome=LeaseOutcome.CLIENT_CLOSED, message=self.error_message)
        return lease_end_for(self.cause, generated=generated, message=self.error_message)


def ending_success() -> Ending:
    return Ending(status=200, outcome=Outcome.OK)


def ending_for_error(error: GatewayError, *, cause: KimiError | None = None) -> Ending:
    return Ending(
        status=error.status,
        outcome=log_outcome(error.status),
        error_code=error.code or "",
        error_message=error.message,
        cause=cause,
    )


def ending_client_closed() -> Ending:
    return Ending(
        status=499,
        outcome=Outcome.CLIENT_CLOSED,
        error_code="client_closed",
        error_message="client closed the connection",
        client_closed=True,
    )


def internal_error() -> GatewayError:
    """A bug of ours, as the client sees it (the details go to the log, never to the client)."""
    return GatewayError("Internal error in the gateway.")
