"""Who is calling: a gateway key (pool mode) or Kimi refresh tokens (pass-through mode).

One rule for bearer credentials, used by every API view: ``sk-`` keys are gateway keys; anything else is
treated as one or more comma-joined Kimi tokens when pass-through is enabled (the ancestor's way).
"""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.crypto import token_hash
from accounts.jwt_claims import jwt_claims
from accounts.services import account_for_passthrough_token
from gateway.models import ApiKey
from gateway.openai.errors import AuthenticationFailed
from gateway.records.keys import api_key_authenticate

MAX_PASSTHROUGH_TOKENS = 20


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling: a gateway key, or a pass-through token (by hash) with its own limits."""

    api_key_id: int | None
    owner_hash: str  # token hash for pass-through callers; "key:<id>" for keys
    rpm_limit: int | None
    max_concurrent: int | None
    passthrough_account_ids: tuple[int, ...] = ()
    turns_per_day: int | None = None  # a key's budget of upstream turns per rolling 24 hours

    # Who may continue a kept chat: "key:<id>" for a key; each token's hash for pass-through callers.
    owners: tuple[str, ...] = ()

    def owner_for(self, *, account_token_hash: str | None) -> str:
        """Kept chats belong to the key, or to the pass-through token whose account served them."""
        if self.api_key_id is not None:
            return f"key:{self.api_key_id}"
        return account_token_hash or self.owner_hash


def bearer_token(authorization: str) -> str:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationFailed("Missing bearer token: send 'Authorization: Bearer <key>'.")
    return value.strip()


def caller_for_key(key: ApiKey | None) -> tuple[Caller, ApiKey]:
    """The caller of an authenticated gateway key; None (unknown, malformed, revoked) is refused."""
    if key is None:
        raise AuthenticationFailed("Invalid API key.")
    caller = Caller(
        api_key_id=key.pk,
        owner_hash=f"key:{key.pk}",
        rpm_limit=key.rpm_limit,
        max_concurrent=key.max_concurrent,
        turns_per_day=key.turns_per_day,
        owners=(f"key:{key.pk}",),
    )
    return caller, key


def passthrough_tokens(*, authorization: str) -> list[str]:
    """The Kimi tokens of a pass-through bearer (comma-joined), or ``AuthenticationFailed``."""
    raw = bearer_token(authorization)
    tokens = [t.strip() for t in raw.split(",") if t.strip()][:MAX_PASSTHROUGH_TOKENS]
    if not tokens or any(len(t) < 20 or " " in t for t in tokens):
        raise AuthenticationFailed("Invalid API key.")
    return tokens


def caller_authenticate(*, authorization: str) -> tuple[Caller, ApiKey | None]:
    """Resolve the Authorization header to a caller (sync; runs in a worker thread)."""
    raw = bearer_token(authorization)
    if raw.startswith("sk-"):
        return caller_for_key(api_key_authenticate(raw=raw))
    if not settings.KIMIPROXY_PASSTHROUGH:
        raise AuthenticationFailed("Invalid API key (pass-through tokens are disabled on this gateway).")
    tokens = passthrough_tokens(authorization=authorization)
    if not all(jwt_claims(t) for t in tokens):
        # Kimi's tokens are JWTs: anything else is refused here, before an account row is stored for it
        # or a local answer (count_tokens, a probe) is given to a credential nobody can check.
        raise AuthenticationFailed("Invalid API key (not a gateway key, nor a Kimi token).")
    try:
        accounts = [account_for_passthrough_token(token=t) for t in tokens]
    except ValidationError:
        raise AuthenticationFailed("Invalid API key (not a gateway key, nor a Kimi token).") from None
    caller = Caller(
        api_key_id=None,
        owner_hash=token_hash(",".join(sorted(tokens))),
        rpm_limit=settings.KIMIPROXY_PASSTHROUGH_RPM or None,
        max_concurrent=None,
        passthrough_account_ids=tuple(a.pk for a in accounts),
        owners=tuple(token_hash(t) for t in tokens),
    )
    return caller, None
