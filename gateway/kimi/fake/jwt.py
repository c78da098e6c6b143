"""HS512 JWTs as the fake upstream mints them, with the claim layouts of doc 1.4.3 (legacy, ``user-center``)
and 2.4.2 (Connect, ``account``). Standard library only: the fake must not share code with the gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from gateway.kimi.fake.ids import digits19, xid

_HEADER = {"alg": "HS512", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_encode(claims: dict[str, Any], secret: bytes) -> str:
    signing_input = _b64(json.dumps(_HEADER, separators=(",", ":")).encode()) + "."
    signing_input += _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha512).digest()
    return signing_input + "." + _b64(signature)


def jwt_payload(token: str) -> dict[str, Any] | None:
    """The claims without checking the signature (to find which account's secret to check it with)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:  # binascii.Error and JSONDecodeError are both ValueErrors
        return None
    return claims if isinstance(claims, dict) else None


def jwt_signature_ok(token: str, secret: bytes) -> bool:
    head, _, signature = token.rpartition(".")
    expected = _b64(hmac.new(secret, head.encode(), hashlib.sha512).digest())
    return hmac.compare_digest(expected, signature)


def identity_claims(*, protocol: str, user_id: str, paid: bool, deployment: str = "kimi.ai") -> dict[str, Any]:
    """The per-account claims that stay the same across every token of the account. Connect tokens
    name their deployment in ``aud`` (doc 2.4.2: ``["kimi.ai"]``; C.5)."""
    if protocol == "legacy":  # doc 1.4.3
        return {"iss": "user-center", "sub": user_id, "space_id": xid(), "abstract_user_id": xid()}
    level = 40 if paid else 10  # doc 2.4.2: 10 seen on a free account; the paid number is invented
    return {
        "iss": "account",
        "aud": [deployment],
        "app_id": "kimi",
        "sub": user_id,
        "abstract_user_id": xid(),
        "ssid": digits19("17"),
        "device_id": digits19("7"),
        "region": "overseas",
        "membership": {"level": level},
        "code_membership": {"level": level},
    }


def token_claims(identity: dict[str, Any], *, typ: str, ttl: int, now: int) -> dict[str, Any]:
    claims = dict(identity)
    claims.update({"iat": now, "exp": now + ttl, "jti": xid(), "typ": typ})
    return claims
