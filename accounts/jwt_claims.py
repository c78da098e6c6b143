"""Reading a Kimi JWT's claims without verifying it (we do not hold Kimi's key, and need not).

Used to detect an account's protocol when it is added, to fill the ``x-msh-*`` headers, and to know
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
