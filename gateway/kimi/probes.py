"""Checking an account without spending a turn (kimi-web-protocol.md C.10).

``account_probe`` is the one check: ``kimi_accounts check``, the admin's "check" action and
``/token/check`` call it, and a probe scheduler can. It refreshes the token (which says whether the
account is alive, with the refusal rules of C.11), then asks the account RPCs, never a chat:

* Connect: ``UserService/GetCurrentUser`` (the token check of doc 2.5.3),
  ``SubscriptionService/GetSubscription`` (the plan; C.10 names it as a peer's token validator) and
  ``MembershipService/GetSubscriptionStats`` (the 5 h / 7 d rate-limit windows, C.10, C.13);
* legacy: ``GET /api/user`` (doc 1.4.4).

Every call goes to the account's origin (C.5), like its chats. What it learns lands on the account
(``accounts.checks.account_record_check``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.checks import AccountFacts, CheckResult, RateWindow, account_record_check
from accounts.jwt_claims import jwt_claims, membership_level
from accounts.models import KimiAccount
from gateway.db.threads import db_call
from gateway.kimi import quota
from gateway.kimi.base import AuthError, KimiError, KimiSession, RefreshRefused
from gateway.kimi.connect.session import ConnectSession
from gateway.kimi.legacy.session import LegacySession
from gateway.kimi.transport.http import UpstreamHTTP

log = logging.getLogger(__name__)

USER_PATH = "/apiv2/kimi.gateway.account.v1.UserService/GetCurrentUser"
SUBSCRIPTION_PATH = "/apiv2/kimi.gateway.order.v1.SubscriptionService/GetSubscription"
STATS_PATH = "/apiv2/kimi.gateway.membership.v2.MembershipService/GetSubscriptionStats"
# GetSubscriptionStats keys of its rate-limit windows (doc 2.10, 2.13.3) -> our names.
STATS_WINDOWS = (("ratelimitCode5h", "5h"), ("ratelimitCode7d", "7d"))
LEGACY_USER_PATH = "/api/user"


async def account_probe(
    *, account_id: int, now: datetime | None = None, http: UpstreamHTTP | None = None
) -> CheckResult:
    """Check the account now and record the result; never opens a chat. ``now`` dates the check and
    any refresh failure (tests move it instead of sleeping)."""
    from gateway.kimi import session_for  # here to avoid an import cycle (session_for imports the clients)

    account = await db_call(KimiAccount.objects.get, pk=account_id)
    session = session_for(account, http=http, clock=(lambda: now) if now else None)
    result = await _probe(session)
    await db_call(account_record_check, account_id=account_id, result=result, now=now or timezone.now())
    return result


async def _probe(session: KimiSession) -> CheckResult:
    if not isinstance(session, ConnectSession | LegacySession):
        raise TypeError(f"no probe for {type(session).__name__}")
    try:
        access = await session.tokens.refresh_now()
    except AuthError as exc:
        return CheckResult("invalid", exc.message)
    except RefreshRefused as exc:
        return CheckResult("cooling", exc.message)
    except KimiError as exc:
        return CheckResult("unreachable", exc.message)
    level = membership_level(jwt_claims(access))  # doc 2.4.2: the access token carries the level
    try:
        if isinstance(session, ConnectSession):
            return CheckResult("live", facts=await _connect_facts(session, level))
        await session.call("GET", LEGACY_USER_PATH)
        return CheckResult("live", facts=AccountFacts(membership_level=level))
    except AuthError as exc:  # refused a token it has just been given
        return CheckResult("rejected", exc.message)
    except KimiError as exc:
        return CheckResult("unreachable", exc.message)


async def _connect_facts(session: ConnectSession, level: int | None) -> AccountFacts:
    await session.unary(session.base_url + USER_PATH, {})
    try:
        answer = await session.unary(session.base_url + SUBSCRIPTION_PATH, {})
    except AuthError:
        raise
    except KimiError as exc:  # the account is live; only its plan stays unknown
        log.info("GetSubscription failed (%s); plan unknown", exc.code)
        return AccountFacts(membership_level=level)
    plan, status = subscription_facts(answer)
    return AccountFacts(
        plan=plan, subscription_status=status, membership_level=level, windows=await _stats_windows(session)
    )


async def _stats_windows(session: ConnectSession) -> tuple[RateWindow, ...]:
    """The 5 h / 7 d windows of ``GetSubscriptionStats`` (C.10), where the account has them; () when the
    call fails (a fact unknown, not a verdict on the account)."""
    try:
        answer = await session.unary(session.base_url + STATS_PATH, {})
    except AuthError:
        raise
    except KimiError as exc:
        log.info("GetSubscriptionStats failed (%s); rate-limit windows unknown", exc.code)
        return ()
    return stats_windows(answer)


def stats_windows(answer: dict[str, Any]) -> tuple[RateWindow, ...]:
    """Each ``ratelimitCode5h`` / ``ratelimitCode7d`` object present: ``ratio`` (0-1, LIKELY shape) and
    ``resetTime`` (RFC 3339). A window marked ``enabled: false`` is left out."""
    windows = []
    for key, name in STATS_WINDOWS:
        window = answer.get(key)
        if not isinstance(window, dict) or window.get("enabled") is False:
            continue
        ratio = window.get("ratio")
        ratio = float(ratio) if isinstance(ratio, int | float) and not isinstance(ratio, bool) else None
        windows.append(RateWindow(name=name, ratio=ratio, reset_at=quota.reset_time(window.get("resetTime"))))
    return tuple(windows)


def subscription_facts(answer: dict[str, Any]) -> tuple[str, str]:
    """(plan, status) from a ``GetSubscription`` answer. The shape is UNCERTAIN (C.10 confirms the RPC,
    not its fields); accepted: ``{"subscription": {"goods": {"title"}, "status"}, "subscribed"}``, the
    same under ``data``, or ``purchaseSubscription`` in place of ``subscription``. No subscription, or
    ``subscribed: false``, is the free plan."""
    wrapped = answer.get("data")
    body: dict[str, Any] = wrapped if isinstance(wrapped, dict) else answer
    subscription = body.get("subscription") or body.get("purchaseSubscription")
    if not isinstance(subscription, dict) or body.get("subscribed") is False:
        return "free", ""
    goods = subscription.get("goods")
    title = goods.get("title") if isinstance(goods, dict) else None
    status = subscription.get("status")
    return (title if isinstance(title, str) else ""), (status if isinstance(status, str) else "")
