"""Plain helpers that build test data through the real services (no factory library).

``make_jwt`` mints an unsigned JWT with the claim layout of protocol doc 2.4.2 (Connect) or 1.4.3
(legacy); tokens are random so every call gives a distinct account.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime
from typing import Any

from accounts import services
from accounts.models import KimiAccount
from gateway.models import ApiKey
from gateway.records.keys import api_key_create, api_key_revoke


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def make_jwt(*, protocol: str = "connect", typ: str = "refresh", exp: float | None = None, **claims: Any) -> str:
    """An unsigned JWT-shaped token. Connect claims have app_id/device_id/ssid; legacy ones do not."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iat": now,
        "exp": int(exp if exp is not None else now + 90 * 86400),
        "jti": secrets.token_hex(10),
        "typ": typ,
        "sub": secrets.token_hex(10),
    }
    if protocol == "connect":
        body |= {"iss": "account", "app_id": "kimi", "device_id": str(secrets.randbelow(10**19)), "ssid": "1" * 19}
    else:
        body |= {"iss": "user-center", "space_id": secrets.token_hex(10)}
    body |= claims
    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{_b64({'alg': 'HS512', 'typ': 'JWT'})}.{_b64(body)}.{signature}"


def make_account(
    *,
    name: str | None = None,
    token: str | None = None,
    protocol: str = "connect",
    limit: int | None = None,
    window_hours: float | None = None,
    max_concurrent: int | None = None,
    state: str | None = None,
    last_used_at: datetime | None = None,
    limit_mode: str = "learn",
) -> KimiAccount:
    """A pool account created by ``account_create``; ``state`` / ``last_used_at`` are then set directly."""
    account, _ = services.account_create(
        name=name or f"acct-{secrets.token_hex(4)}",
        token=token or make_jwt(protocol=protocol),
        protocol=protocol,
        limit=limit,
        window_hours=window_hours,
        max_concurrent=max_concurrent,
        limit_mode=limit_mode,
    )
    extra = {k: v for k, v in {"state": state, "last_used_at": last_used_at}.items() if v is not None}
    if extra:
        KimiAccount.objects.filter(pk=account.pk).update(**extra)
        account.refresh_from_db()
    return account


def make_api_key(
    *,
    name: str | None = None,
    rpm: int | None = None,
    allowed_models: list[str] | None = None,
    max_concurrent: int | None = None,
    revoked: bool = False,
    local_probes: bool = True,
    native_multiturn: bool = False,
) -> tuple[ApiKey, str]:
    """A key created by ``api_key_create``: the row and the full key."""
    key, raw = api_key_create(
        name=name or f"key-{secrets.token_hex(4)}",
        rpm=rpm,
        allowed_models=allowed_models,
        max_concurrent=max_concurrent,
        local_probes=local_probes,
        native_multiturn=native_multiturn,
    )
    if revoked:
        api_key_revoke(key=key)
    return key, raw
