"""Reading a Kimi JWT's claims without verifying it (we do not hold Kimi's key, and need not).

Used to detect an account's protocol and origin when it is added, to fill the ``x-msh-*`` headers, and to know
when an access token expires (protocol doc 1.4.3 and 2.4.2).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, or None when the token is not a decodable JWT."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_expiry(token: str) -> datetime | None:
    claims = jwt_claims(token) or {}
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        return datetime.fromtimestamp(exp, tz=UTC)
    return None


def protocol_from_claims(claims: dict[str, Any] | None) -> str:
    """``connect`` or ``legacy``: app_id/device_id/ssid claims mean Connect (doc 2.4.2); a
    ``user-center`` token without them means legacy (doc 1.4.3); anything undecodable means Connect."""
    if not claims:
        return "connect"
    if any(key in claims for key in ("app_id", "device_id", "ssid")):
        return "connect"
    if claims.get("iss") == "user-center":
        return "legacy"
    return "connect"


def _names_kimi_ai(value: object) -> bool:
    """``kimi.ai``, a host under it, or a URL of one (an audience or issuer naming the deployment)."""
    if not isinstance(value, str):
        return False
    host = value.strip().lower().split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host == "kimi.ai" or host.endswith(".kimi.ai")


def origin_from_claims(claims: dict[str, Any] | None) -> str:
    """``kimi.ai`` when the token's ``aud`` (a string or a list) or ``iss`` names kimi.ai, as tokens
    issued there do (kimi-web-protocol.md 2.4.2, C.5); ``kimi.com`` for anything else, undecodable
    tokens included (the deployment every account used before kimi.ai existed)."""
    claims = claims or {}
    audience = claims.get("aud")
    names = [*(audience if isinstance(audience, list) else [audience]), claims.get("iss")]
    return "kimi.ai" if any(_names_kimi_ai(name) for name in names) else "kimi.com"


def membership_level(claims: dict[str, Any] | None) -> int | None:
    """The ``membership.level`` claim of a Connect token (doc 2.4.2: 10 on a free account), if any."""
    membership = (claims or {}).get("membership")
    level = membership.get("level") if isinstance(membership, dict) else None
    return level if isinstance(level, int) and not isinstance(level, bool) and level >= 0 else None
