"""The ``signature`` of a ``thinking`` block: an HMAC-SHA256 of its text, base64, with a key the door
derives from ``SECRET_KEY`` (``signing_key``). Clients send thinking blocks back in the history with
their signature; the gateway never verifies them (any value is accepted), so the signature only has to
be a stable, opaque value that does not reveal the key."""

from __future__ import annotations

import base64
import hashlib
import hmac

_PURPOSE = b"kimiproxy/anthropic/thinking-signature/v1"


def signing_key(secret: str) -> bytes:
    """The signature key for a deployment's ``SECRET_KEY`` (a key of its own, not the secret itself)."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def thinking_signature(text: str, *, key: bytes) -> str:
    return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()
