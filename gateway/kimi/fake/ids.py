"""Identifiers shaped like Kimi's: 20-char xids (doc 1.3) and UUID-shaped ids (doc 2.15)."""

from __future__ import annotations

import secrets
import uuid

_XID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex, lowercase (doc 1.3)


def xid() -> str:
    return "".join(secrets.choice(_XID_ALPHABET) for _ in range(20))


def uuid_id() -> str:
    return str(uuid.uuid4())


def digits19(prefix: str) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(19 - len(prefix)))
