"""gateway/chat/settle.py: the one mapping from an upstream failure to a lease's fate (outcome, refund,
retry time), and how a request's ending is described for the final write and the log."""

from __future__ import annotations

import pytest

from accounts.choices import LeaseOutcome
from gateway.chat.attempt import AttemptCancelled
from gateway.chat.settle import (
    Ending,
    LeaseEnd,
    ending_client_closed,
    ending_for_error,
    ending_success,
    internal_error,
    lease_end_for,
    lease_outcome,
    log_outcome,
)
from gateway.kimi import base as kimi
from gateway.openai.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    RateLimitExceeded,
    gateway_error_from_kimi,
)

# Every failure class -> (the pool's outcome name, refunded when no answer content arrived). Stated
# here independently of the classes' own attributes, so a changed flag shows up as a failing case.
EXPECTED: dict[type[kimi.KimiError], tuple[str, bool]] = {
    kimi.KimiError: ("upstream_error", False),
    kimi.AuthError: ("auth", True),
    kimi.RateLimited: ("rate_limited", True),
    kimi.Overloaded: ("overloaded", True),
    kimi.StreamBusy: ("stream_busy", True),
    kimi.Unavailable: ("unavailable", True),
    kimi.RefreshRefused: ("refresh_refused", True),  # cooled by the token layer, not again by the pool
    kimi.UpstreamTimeout: ("timeout", True),
    kimi.ConnectTimeout: ("timeout", True),
    kimi.FirstByteTimeout: ("timeout", True),
    kimi.IdleTimeout: ("timeout", False),  # bytes were flowing: the upstream worked
    kimi.NoProgressTimeout: ("timeout", False),
    kimi.ContentFiltered: ("content_filtered", False),
    kimi.BadRequest: ("bad_request", False),
    kimi.ChatNotFound: ("bad_request", False),
    kimi.ContextTooLong: ("bad_request", True),  # the upstream did no work: not counted, no cooldown
    kimi.FileRejected: ("bad_request", False),
    kimi.ProtocolError: ("protocol_error", False),
    AttemptCancelled: ("client_closed", True),
}


def _all_subclasses(cls: type[kimi.KimiError]) -> set[type[kimi.KimiError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _all_subclasses(sub)
    return found


def test_the_table_names_every_upstream_failure_class():
    """A new KimiError subclass must get a row here (and a decision about its lease)."""
    known = {c for c in _all_subclasses(kimi.KimiError) if c.__module__.startswith("gateway.")}
    assert known == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_each_failure_maps_to_its_lease_outcome_and_refund(cls):
    outcome, refunded = EXPECTED[cls]
    exc = cls("upstream said no")
    assert lease_outcome(exc) == outcome
    assert lease_end_for(exc, generated=False) == LeaseEnd(outcome=outcome, refund=refunded, message="upstream said no")


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_a_turn_that_generated_content_is_never_refunded(cls):
    end = lease_end_for(cls(), generated=True)
    assert (end.outcome, end.refund) == (EXPECTED[cls][0], False)


def test_a_rate_limit_carries_the_upstream_retry_time():
    assert lease_end_for(kimi.RateLimited(retry_after=42.5), generated=False).retry_after == 42.5
    assert lease_end_for(kimi.RateLimited(), generated=False).retry_after is None
    assert lease_end_for(kimi.Overloaded(), generated=False).retry_after is None


def test_the_message_given_wins_over_the_upstream_one():
    assert lease_end_for(kimi.Overloaded("busy upstream"), generated=False).message == "busy upstream"
    assert lease_end_for(kimi.Overloaded("busy upstream"), generated=False, message="ours").message == "ours"


def test_no_failure_is_an_ok_lease_that_still_counts():
    assert lease_end_for(None, generated=False) == LeaseEnd(outcome=LeaseOutcome.OK, refund=False, retry_after=None)
    assert lease_end_for(None, generated=False, message="note").message == "note"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (399, "ok"),
        (400, "client_error"),
        (401, "client_error"),
        (404, "client_error"),
        (413, "client_error"),
        (429, "rate_limited"),
        (499, "client_error"),
        (500, "upstream_error"),
        (502, "upstream_error"),
        (504, "upstream_error"),
    ],
)
def test_the_log_outcome_follows_the_status(status, outcome):
    assert log_outcome(status) == outcome


def test_success_ends_with_200_ok_and_an_ok_lease():
    ending = ending_success()
    assert (ending.status, ending.outcome, ending.error_code, ending.cause) == (200, "ok", "", None)
    assert ending.lease_end(generated=True) == LeaseEnd(outcome=LeaseOutcome.OK)


def test_an_upstream_failure_ends_the_request_and_settles_the_lease_by_its_cause():
    cause = kimi.RateLimited("quota", retry_after=30)
    error = gateway_error_from_kimi(cause)
    ending = ending_for_error(error, cause=cause)
    assert (ending.status, ending.outcome, ending.error_code) == (429, "rate_limited", "upstream_rate_limited")
    assert ending.error_message == error.message and ending.cause is cause
    assert ending.lease_end(generated=False) == LeaseEnd(
        outcome="rate_limited", refund=True, retry_after=30, message=error.message
    )
    assert ending.lease_end(generated=True).refund is False


@pytest.mark.parametrize(
    ("error", "status", "outcome", "code"),
    [
        (InvalidRequest("bad", code="missing_prompt"), 400, "client_error", "missing_prompt"),
        (AuthenticationFailed("who?"), 401, "client_error", "invalid_api_key"),
        (RateLimitExceeded("slow down", retry_after=5), 429, "rate_limited", "rate_limit_exceeded"),
        (internal_error(), 500, "upstream_error", "internal_error"),
    ],
)
def test_a_gateway_error_without_upstream_cause_leaves_the_lease_ok(error, status, outcome, code):
    """Our own refusals and bugs say nothing about the account: its lease ends ``ok`` (counted)."""
    ending = ending_for_error(error)
    assert (ending.status, ending.outcome, ending.error_code, ending.cause) == (status, outcome, code, None)
    assert ending.lease_end(generated=False) == LeaseEnd(outcome=LeaseOutcome.OK, message=error.message)


def test_a_client_that_went_away_is_499_and_a_neutral_unrefunded_lease():
    ending = ending_client_closed()
    assert (ending.status, ending.outcome, ending.error_code) == (499, "client_closed", "client_closed")
    assert ending.client_closed
    for generated in (False, True):
        assert ending.lease_end(generated=generated) == LeaseEnd(
            outcome=LeaseOutcome.CLIENT_CLOSED, refund=False, message="client closed the connection"
        )


def test_client_closed_wins_over_a_cause():
    ending = Ending(status=499, outcome="client_closed", cause=kimi.Overloaded(), client_closed=True)
    assert ending.lease_end(generated=False).outcome == LeaseOutcome.CLIENT_CLOSED


def test_the_internal_error_tells_the_client_nothing_of_the_bug():
    error = internal_error()
    assert isinstance(error, GatewayError)
    assert (error.status, error.code, error.message) == (500, "internal_error", "Internal error in the gateway.")
