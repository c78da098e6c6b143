"""Access tokens per account: a database cache shared by every worker, and single-flight refresh.

The access token is cached encrypted in ``KimiAccount.access_token_enc`` with ``access_expires_at``
and reused until fewer than ``KIMIPROXY_TOKEN_REFRESH_MARGIN`` seconds remain. One worker refreshes at
a time: it claims the account with a conditional UPDATE of ``refreshing_until`` (the sendalerts
pattern; works on SQLite and PostgreSQL), calls the upstream with no transaction open, and stores the
new access token and the rotated refresh token in one UPDATE. Other workers poll the row meanwhile.
The refresh call itself is the protocol's (``connect.refresh_tokens`` / ``legacy.refresh_tokens``),
passed in as ``refresher``.

A refresh token past its JWT ``exp`` is not sent: the account is marked ``invalid`` with that reason.
Refusals (kimi-web-protocol.md C.11): the explicit dead-token answer (``AuthError``) marks the account
``invalid`` at once. Any other refusal (``RefreshRefused``: a filter's 403, a 400, 5xx, HTML) cools it
down with backoff and counts; ``KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID`` of them in a row, spread
over at least ``REFRESH_FAILURE_SPAN`` seconds, mark it invalid. A successful refresh zeroes the count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import limits
from accounts.choices import AccountState
from accounts.crypto import token_decrypt, token_encrypt
from accounts.jwt_claims import jwt_expiry
from accounts.models import KimiAccount
from gateway.db.threads import db_call
from gateway.kimi.base import AuthError, RefreshRefused

log = logging.getLogger(__name__)

# A token whose expiry cannot be read (not a JWT) is trusted this long (the KFA reuse window, doc 1.18).
OPAQUE_TOKEN_LIFETIME = 300.0
# How long a refresh claim holds: past it, a crashed refresher's claim is taken over.
CLAIM_SECONDS = 30.0
POLL_SECONDS = 0.05
# C.11: refusals must be "some minutes apart" before they count as a dead token; ten minutes outlasts a
# filter's or a deploy's bad spell, and three failures still invalidate a dead account within the hour.
REFRESH_FAILURE_SPAN = 600.0
REFRESH_REFUSED = "refresh_refused"  # last_error_code of a refusal that only cooled the account down


@dataclasses.dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str  # the rotated refresh token ("" when the upstream did not rotate it)

    def __repr__(self) -> str:
        return "<TokenPair ***>"


Refresher = Callable[[str], Awaitable[TokenPair]]


@dataclasses.dataclass(frozen=True)
class _Row:
    access_enc: str  # the ciphertext doubles as a version: every encryption differs
    access: str
    expires_at: datetime | None
    refresh_enc: str
    refreshing_until: datetime | None
    state: str
    last_error_at: datetime | None
    last_error_code: str

    @property
    def refresh(self) -> str:
        """Decrypted only when a refresh is due (most requests never need it)."""
        return token_decrypt(self.refresh_enc)

    def usable(self, *, rejected: str | None, margin: float, now: datetime) -> bool:
        if not self.access or self.access == rejected or self.expires_at is None:
            return False
        return self.expires_at - timedelta(seconds=margin) > now

    def __repr__(self) -> str:
        return f"<_Row state={self.state}>"


class DbTokenSource:
    """``base.TokenSource`` for one account, backed by its ``KimiAccount`` row."""

    def __init__(
        self,
        *,
        account_id: int,
        refresher: Refresher,
        preloaded: KimiAccount | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.account_id = account_id
        self._refresher = refresher
        self._clock = clock or timezone.now  # dates refresh failures (tests move it instead of sleeping)
        # The row the caller has just read (the lease's account): the first lookup uses it instead of
        # a query of its own. A stale token still gets a 401, and the retry (``rejected``) re-reads the row.
        self._preloaded = preloaded if preloaded is not None and _has_token_fields(preloaded) else None

    async def access_token(self, *, rejected: str | None = None) -> str:
        started = self._clock()  # the clock refusals are dated with: "since I asked" compares like with like
        deadline = asyncio.get_running_loop().time() + CLAIM_SECONDS + 5
        while True:
            now = timezone.now()
            row = self._take_preloaded() if rejected is None else None
            if row is None:
                row = await db_call(_load, self.account_id)
            if row.usable(rejected=rejected, margin=settings.KIMIPROXY_TOKEN_REFRESH_MARGIN, now=now):
                return row.access
            if not row.refresh_enc:
                return await self._access_only(row, rejected=rejected, now=now)
            if row.last_error_at and row.last_error_at >= started:  # another worker just found out
                if row.state == AccountState.INVALID:
                    raise AuthError("refresh token rejected by upstream")
                if row.last_error_code == REFRESH_REFUSED:
                    raise RefreshRefused("refresh refused by upstream")
            if await db_call(_claim, self.account_id, now, seen=row.access_enc):
                return await self._refresh(row.refresh)
            if asyncio.get_running_loop().time() > deadline:
                raise AuthError("timed out waiting for another worker's token refresh")
            await asyncio.sleep(POLL_SECONDS)

    def _take_preloaded(self) -> _Row | None:
        account, self._preloaded = self._preloaded, None
        return _row_of(account) if account is not None else None

    async def refresh_now(self) -> str:
        """Refresh even if the cached token is still good (the admin's "check now")."""
        self._preloaded = None  # calls after this one must see the token it stores, not the row read before
        row = await db_call(_load, self.account_id)
        return await self.access_token(rejected=row.access or None)

    async def _access_only(self, row: _Row, *, rejected: str | None, now: datetime) -> str:
        # An account imported with an access token only: use it until it expires (no margin: it cannot
        # be renewed anyway), then the account is dead.
        if row.access and row.access != rejected and row.expires_at and row.expires_at > now:
            return row.access
        message = "access token expired or rejected and there is no refresh token"
        await db_call(_mark_invalid, self.account_id, message)
        raise AuthError(message)

    async def _refresh(self, refresh_token: str) -> str:
        expired_at = jwt_expiry(refresh_token)
        if expired_at is not None and expired_at <= self._clock():
            # A dead token is not worth a call (the upstream would refuse it, C.11): say why instead.
            message = f"refresh token expired at {expired_at:%Y-%m-%d %H:%M} UTC; paste a new one"
            await db_call(_mark_invalid, self.account_id, message, now=self._clock())
            raise AuthError(message)
        try:
            pair = await self._refresher(refresh_token)
        except AuthError as exc:
            await db_call(_mark_invalid, self.account_id, exc.message, now=self._clock())
            raise
        except RefreshRefused as exc:
            if await db_call(_note_refusal, self.account_id, exc.message, now=self._clock()):
                raise AuthError(f"refresh refused repeatedly; last: {exc.message}", status=exc.status) from exc
            raise
        except BaseException:
            await asyncio.shield(db_call(_release, self.account_id))
            raise
        await db_call(_store, self.account_id, pair)
        return pair.access_token


def access_expiry(access_token: str, *, now: datetime) -> datetime:
    return jwt_expiry(access_token) or now + timedelta(seconds=OPAQUE_TOKEN_LIFETIME)


# -- database (sync; called through db_call) ---------------------------------------------------------


_TOKEN_FIELDS = (
    "access_token_enc",
    "access_expires_at",
    "refresh_token_enc",
    "refreshing_until",
    "state",
    "last_error_at",
    "last_error_code",
)


def _has_token_fields(account: KimiAccount) -> bool:
    return not set(_TOKEN_FIELDS) & account.get_deferred_fields()


def _load(account_id: int) -> _Row:
    return _row_of(KimiAccount.objects.only(*_TOKEN_FIELDS).get(pk=account_id))


@functools.lru_cache(maxsize=1024)
def _access_plaintext(ciphertext: str) -> str:
    """Decrypting costs ~0.3 ms on every request; a ciphertext always decrypts to the same token, and
    a refresh stores a new ciphertext, so the process keeps the last ones it saw (memory only)."""
    return token_decrypt(ciphertext)


def _row_of(account: KimiAccount) -> _Row:
    return _Row(
        access_enc=account.access_token_enc,
        access=_access_plaintext(account.access_token_enc) if account.access_token_enc else "",
        expires_at=account.access_expires_at,
        refresh_enc=account.refresh_token_enc,
        refreshing_until=account.refreshing_until,
        state=account.state,
        last_error_at=account.last_error_at,
        last_error_code=account.last_error_code,
    )


def _claim(account_id: int, now: datetime, *, seen: str) -> bool:
    """True when this worker now owns the refresh (exactly one row updated). ``seen`` is the access
    token ciphertext the decision was based on: if another worker stored a new token since, the claim
    fails and the caller re-reads the row instead of refreshing a second time."""
    free = Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now)
    until = now + timedelta(seconds=CLAIM_SECONDS)
    rows = KimiAccount.objects.filter(free, pk=account_id, access_token_enc=seen)
    return rows.update(refreshing_until=until) == 1


def _release(account_id: int) -> None:
    KimiAccount.objects.filter(pk=account_id).update(refreshing_until=None)


def _store(account_id: int, pair: TokenPair) -> None:
    """New access token and rotated refresh token in one UPDATE (one transaction); a success ends any
    run of refused refreshes (C.11)."""
    now = timezone.now()
    values: dict[str, object] = {
        "access_token_enc": token_encrypt(pair.access_token),
        "access_expires_at": access_expiry(pair.access_token, now=now),
        "refreshing_until": None,
        "refresh_failures": 0,
        "refresh_failing_since": None,
        "updated_at": now,
    }
    if pair.refresh_token:
        values["refresh_token_enc"] = token_encrypt(pair.refresh_token)
        values["token_last4"] = pair.refresh_token[-4:]
        values["token_expires_at"] = jwt_expiry(pair.refresh_token)
    KimiAccount.objects.filter(pk=account_id).update(**values)


def _mark_invalid(account_id: int, message: str, *, now: datetime | None = None) -> None:
    now = now or timezone.now()
    KimiAccount.objects.filter(pk=account_id).update(
        state=AccountState.INVALID,
        last_error_code="auth",
        last_error_message=message[:500],
        last_error_at=now,
        access_token_enc="",
        access_expires_at=None,
        refreshing_until=None,
        updated_at=now,
    )
    log.warning("account %s marked invalid: %s", account_id, message[:200])


def _note_refusal(account_id: int, message: str, *, now: datetime) -> bool:
    """Count one refused refresh (C.11): cool the account down with backoff, or mark it invalid when
    this makes ``KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID`` in a row over ``REFRESH_FAILURE_SPAN``.
    True when the account is now invalid. A disabled or invalid account keeps its state."""
    with transaction.atomic():
        account = KimiAccount.objects.select_for_update().get(pk=account_id)
        failures = account.refresh_failures + 1
        since = account.refresh_failing_since or now
        spread = (now - since).total_seconds() >= REFRESH_FAILURE_SPAN
        if failures >= settings.KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID and spread:
            KimiAccount.objects.filter(pk=account_id).update(refresh_failures=failures, refresh_failing_since=since)
            _mark_invalid(account_id, f"{message} ({failures} times since {since:%Y-%m-%d %H:%M} UTC)", now=now)
            return True
        changes: dict[str, object] = {
            "refresh_failures": min(failures, 32767),
            "refresh_failing_since": since,
            "refreshing_until": None,
            "last_error_code": REFRESH_REFUSED,
            "last_error_message": message[:500],
            "last_error_at": now,
            "updated_at": now,
        }
        if account.state not in (AccountState.INVALID, AccountState.DISABLED):
            level = account.backoff_level + 1
            wait = limits.cooldown_seconds(base=settings.KIMIPROXY_COOLDOWN_SECONDS, level=level)
            changes |= {"state": AccountState.COOLING, "backoff_level": min(level, 100)}
            changes["cooldown_until"] = now + timedelta(seconds=wait)
        KimiAccount.objects.filter(pk=account_id).update(**changes)
    log.warning("account %s: refresh refused (%d in a row), cooling down: %s", account_id, failures, message[:200])
    return False
