"""Services that change accounts: create, import, enable, disable, reset window, replace token, set
origin, check.

Tokens enter here in clear and leave encrypted (``accounts.crypto``); nothing here logs, returns or
puts a token in an error message. Errors are ``ValidationError`` with one message a person can act on.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import crypto, limits
from accounts.checks import CheckResult
from accounts.choices import AccountSource, AccountState, LimitMode, Origin, Protocol, TurnStatus
from accounts.jwt_claims import jwt_claims, jwt_expiry, origin_from_claims, protocol_from_claims
from accounts.models import KimiAccount, Turn

MIN_TOKEN_LENGTH = 20  # real Kimi JWTs are hundreds of characters; shorter is a copy-paste slip
NAME_MAX_LENGTH = KimiAccount._meta.get_field("name").max_length or 100
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces, as JWTs are


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """A normalised token and what its claims say (never printed: no ``__repr__`` of the token)."""

    token: str = dataclasses.field(repr=False)
    protocol: str
    origin: str  # the deployment that issued it (kimi-web-protocol.md C.5)
    is_access: bool
    expires_at: datetime | None
    is_jwt: bool


def token_normalize(raw: str) -> str:
    """The token without surrounding whitespace and quotes (localStorage values are JSON strings,
    protocol doc 2.4.1), or ``ValidationError`` when it cannot be a token."""
    token = (raw or "").strip().strip("\"'").strip()
    if not token:
        raise ValidationError("The token is empty.")
    if any(ch.isspace() for ch in token):
        raise ValidationError("The token contains whitespace; paste it as one piece.")
    if not _TOKEN_CHARS.match(token):
        raise ValidationError("The token contains characters a Kimi token cannot have.")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValidationError(f"The token is too short to be a Kimi token ({len(token)} characters).")
    return token


def token_inspect(raw: str) -> TokenInfo:
    token = token_normalize(raw)
    claims = jwt_claims(token)
    return TokenInfo(
        token=token,
        protocol=protocol_from_claims(claims),
        origin=origin_from_claims(claims),
        is_access=bool(claims and claims.get("typ") == "access"),
        expires_at=jwt_expiry(token),
        is_jwt=claims is not None,
    )


def _token_warnings(info: TokenInfo, now: datetime) -> list[str]:
    warnings = []
    if info.is_access:
        warnings.append("This is an access token: it is stored as one and cannot be renewed when it expires.")
    if not info.is_jwt:
        warnings.append("The token is not a JWT; its protocol could not be detected (assuming connect).")
    if info.expires_at and info.expires_at <= now:
        warnings.append(f"The token expired at {info.expires_at:%Y-%m-%d %H:%M} UTC.")
    return warnings


def _token_fields(info: TokenInfo) -> dict[str, object]:
    """Model fields for a token: a refresh token, or an access token with its expiry."""
    enc = crypto.token_encrypt(info.token)
    fields: dict[str, object] = {"token_last4": info.token[-4:], "token_expires_at": info.expires_at}
    if info.is_access:
        return fields | {"refresh_token_enc": "", "access_token_enc": enc, "access_expires_at": info.expires_at}
    return fields | {"refresh_token_enc": enc, "access_token_enc": "", "access_expires_at": None}


def _origin_for(*, protocol: str, origin: str | None, info: TokenInfo) -> str:
    """The account's origin: as given, else the token's (C.5); a legacy account is always kimi.com
    (its one host is ``KIMI_LEGACY_BASE_URL``)."""
    if origin and origin not in Origin.values:
        raise ValidationError(f"Unknown origin {origin!r} (choose {' or '.join(Origin.values)}).")
    if protocol == Protocol.LEGACY:
        if origin and origin != Origin.KIMI_COM:
            raise ValidationError("A legacy account has no kimi.ai origin (it uses KIMI_LEGACY_BASE_URL).")
        return Origin.KIMI_COM
    return origin or info.origin


def _limit_fields(*, limit: int | None, window_hours: float | None, max_concurrent: int | None) -> dict[str, int]:
    turn_limit = settings.KIMIPROXY_DEFAULT_TURN_LIMIT if limit is None else limit
    hours = settings.KIMIPROXY_DEFAULT_WINDOW_HOURS if window_hours is None else window_hours
    fields = {"turn_limit": int(turn_limit), "window_seconds": round(float(hours) * 3600)}
    if max_concurrent is not None:
        fields["max_concurrent"] = int(max_concurrent)
    if fields["turn_limit"] < 1:
        raise ValidationError("The limit must be at least 1 turn.")
    if fields["window_seconds"] < 60:
        raise ValidationError("The window must be at least one minute.")
    if fields.get("max_concurrent", 1) < 1:
        raise ValidationError("The concurrency cap must be at least 1.")
    return fields


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("The account name is empty.")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(f"The account name is longer than {NAME_MAX_LENGTH} characters.")
    return name


def account_create(
    *,
    name: str,
    token: str,
    protocol: str | None = None,
    origin: str | None = None,
    limit: int | None = None,
    window_hours: float | None = None,
    max_concurrent: int | None = None,
    limit_mode: str = LimitMode.LEARN,
) -> tuple[KimiAccount, list[str]]:
    """Create a pool account; return it with warnings to show the operator. ``protocol`` and
    ``origin`` default to what the token says. In ``learn`` mode (the default) ``limit`` is the cap of
    the limit learned from quota refusals; ``pinned`` keeps it as the limit."""
    name = _clean_name(name)
    info = token_inspect(token)
    if protocol and protocol not in Protocol.values:
        raise ValidationError(f"Unknown protocol {protocol!r} (choose {' or '.join(Protocol.values)}).")
    fields: dict[str, object] = {**_limit_fields(limit=limit, window_hours=window_hours, max_concurrent=max_concurrent)}
    protocol = protocol or info.protocol
    fields["origin"] = _origin_for(protocol=protocol, origin=origin, info=info)
    if limit_mode not in LimitMode.values:
        raise ValidationError(f"Unknown limit mode {limit_mode!r} (choose {' or '.join(LimitMode.values)}).")
    fields["limit_mode"] = limit_mode
    if KimiAccount.objects.filter(name=name).exists():
        raise ValidationError(f"An account named {name!r} already exists.")
    try:
        with transaction.atomic():
            account = KimiAccount.objects.create(
                name=name,
                source=AccountSource.POOL,
                protocol=protocol,
                **fields,
                **_token_fields(info),
            )
    except IntegrityError:  # lost a race with a concurrent create of the same name
        raise ValidationError(f"An account named {name!r} already exists.") from None
    return account, _token_warnings(info, timezone.now())


def account_set_token(*, account: KimiAccount, token: str) -> list[str]:
    """Replace an account's token (the cached access token goes with it); an invalid account becomes
    active again, since a new token is the usual fix. Returns warnings."""
    info = token_inspect(token)
    fields = _token_fields(info) | {"refreshing_until": None}
    if account.state == AccountState.INVALID:
        fields["state"] = AccountState.ACTIVE
    for key, value in fields.items():
        setattr(account, key, value)
    account.save(update_fields=[*fields, "updated_at"])
    warnings = _token_warnings(info, timezone.now())
    if info.is_jwt and info.protocol != account.protocol:
        warnings.append(f"The token looks like a {info.protocol} token but the account uses {account.protocol}.")
    elif info.is_jwt and account.protocol == Protocol.CONNECT and info.origin != account.origin:
        warnings.append(f"The token was issued by {info.origin} but the account's origin is {account.origin}.")
    return warnings


def account_set_origin(*, account: KimiAccount, origin: str) -> None:
    """Send every later call of the account to ``origin`` (C.5); the cached access token is dropped,
    since it was issued by the other deployment."""
    if origin not in Origin.values:
        raise ValidationError(f"Unknown origin {origin!r} (choose {' or '.join(Origin.values)}).")
    if account.protocol == Protocol.LEGACY and origin != Origin.KIMI_COM:
        raise ValidationError("A legacy account has no kimi.ai origin (it uses KIMI_LEGACY_BASE_URL).")
    KimiAccount.objects.filter(pk=account.pk).update(
        origin=origin, access_token_enc="", access_expires_at=None, updated_at=timezone.now()
    )
    account.refresh_from_db()


def account_enable(*, account: KimiAccount) -> None:
    """Back into rotation: active, no cooldown, no backoff (also clears ``invalid``)."""
    _set_state(account, AccountState.ACTIVE, cooldown_until=None, backoff_level=0)


def account_disable(*, account: KimiAccount) -> None:
    """Out of rotation until enabled; in-flight turns finish normally."""
    _set_state(account, AccountState.DISABLED)


def _set_state(account: KimiAccount, state: str, **extra: object) -> None:
    KimiAccount.objects.filter(pk=account.pk).update(state=state, updated_at=timezone.now(), **extra)
    account.refresh_from_db()


def account_reset_window(*, account: KimiAccount, now: datetime | None = None) -> int:
    """Forget the usage in the current window: finished turns in it are marked refunded (they stop
    counting; in-flight ones keep counting until they end) and an exhausted/cooling account becomes
    active. Returns how many turns stopped counting."""
    now = now or timezone.now()
    with transaction.atomic():
        KimiAccount.objects.select_for_update().filter(pk=account.pk).exists()
        start = limits.window_start(now=now, window_seconds=account.window_seconds)
        refunded = Turn.objects.filter(account=account, status=TurnStatus.DONE, started_at__gt=start).update(
            status=TurnStatus.REFUNDED
        )
        if account.state in (AccountState.EXHAUSTED, AccountState.COOLING):
            _set_state(account, AccountState.ACTIVE, cooldown_until=None, backoff_level=0)
        else:
            KimiAccount.objects.filter(pk=account.pk).update(cooldown_until=None, backoff_level=0)
    account.refresh_from_db()
    return refunded


def account_clear_cooldown(*, account: KimiAccount, now: datetime | None = None) -> bool:
    """End a cooldown or an exhaustion now: a cooling or exhausted account becomes active, its backoff
    starts again; the turns it served keep counting (``account_reset_window`` forgets them too). An
    invalid or disabled account only loses its timer. True when the account was cooling or exhausted."""
    now = now or timezone.now()
    rows = KimiAccount.objects.filter(pk=account.pk)
    revived = rows.filter(state__in=(AccountState.COOLING, AccountState.EXHAUSTED)).update(
        state=AccountState.ACTIVE, cooldown_until=None, backoff_level=0, updated_at=now
    )
    if not revived:
        rows.update(cooldown_until=None, backoff_level=0, updated_at=now)
    account.refresh_from_db()
    return revived == 1


def account_check_now(*, account: KimiAccount, now: datetime | None = None) -> CheckResult:
    """Check the account without spending a turn (refresh + account RPCs, kimi-web-protocol.md C.10)
    and record what it says. The upstream lives in ``gateway.kimi`` (one seam:
    ``probes.account_probe``), imported late so ``accounts`` never imports the gateway at load time."""
    from gateway.kimi.probes import account_probe
    from gateway.kimi.transport.http import run_upstream

    return run_upstream(account_probe, account_id=account.pk, now=now)


def account_for_passthrough_token(*, token: str, now: datetime | None = None) -> KimiAccount:
    """The pass-through account for a client's own Kimi token, created on first sight.

    Keyed by the token's SHA-256; once it exists its stored (possibly rotated) token is never
    overwritten from the client's copy.
    """
    info = token_inspect(token)
    digest = crypto.token_hash(info.token)
    existing = KimiAccount.objects.filter(token_hash=digest).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return KimiAccount.objects.create(
                name=f"pt-{digest[:12]}",
                source=AccountSource.PASSTHROUGH,
                token_hash=digest,
                protocol=info.protocol,
                origin=_origin_for(protocol=info.protocol, origin=None, info=info),
                **_limit_fields(limit=None, window_hours=None, max_concurrent=None),
                **_token_fields(info),
            )
    except IntegrityError:  # a concurrent request created it first
        return KimiAccount.objects.get(token_hash=digest)


@dataclasses.dataclass(frozen=True)
class ImportLine:
    """The outcome of one input line (``line`` is 1-based); messages never contain the token."""

    line: int
    name: str
    ok: bool
    message: str = ""


@dataclasses.dataclass
class ImportResult:
    lines: list[ImportLine] = dataclasses.field(default_factory=list)

    @property
    def created(self) -> list[ImportLine]:
        return [item for item in self.lines if item.ok]

    @property
    def errors(self) -> list[ImportLine]:
        return [item for item in self.lines if not item.ok]


def _split_line(text: str) -> tuple[str, str]:
    """``token`` or ``name,token`` (a JWT never contains a comma)."""
    if "," in text:
        name, token = text.split(",", 1)
        return name.strip(), token
    return "", text


def accounts_import(*, lines: Iterable[str]) -> ImportResult:
    """Create one pool account per line; blank lines and ``#`` comments are skipped. A line without a
    name gets ``kimi-<8 hex of the token's hash>``, so importing the same token twice is refused."""
    result = ImportResult()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        name, token = _split_line(text)
        try:
            name = name or f"kimi-{crypto.token_hash(token_normalize(token))[:8]}"
            _, warnings = account_create(name=name, token=token)
        except ValidationError as exc:
            result.lines.append(ImportLine(line=number, name=name, ok=False, message=" ".join(exc.messages)))
        else:
            result.lines.append(ImportLine(line=number, name=name, ok=True, message=" ".join(warnings)))
    return result
