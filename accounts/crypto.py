"""Encryption of tokens at rest: the only place a plaintext token and a key meet.

Keys come from ``settings.KIMIPROXY_TOKEN_KEYS`` (newest first). ``MultiFernet`` encrypts with the first
and decrypts with any, so a key is rotated by putting the new one in front and running
``manage.py rotate_token_key``, which re-encrypts every row with the newest key.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted with any configured key (the key was changed or lost)."""


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.KIMIPROXY_TOKEN_KEYS))


def derive_key(secret: str) -> str:
    """A Fernet key derived from a secret (used when no KIMIPROXY_TOKEN_KEY is configured)."""
    digest = hashlib.sha256(b"kimiproxy-token-key:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def token_encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def token_decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenDecryptError("stored token cannot be decrypted with the configured keys") from None


def token_reencrypt(ciphertext: str) -> str:
    """Re-encrypt with the newest key (no-op for empty values)."""
    if not ciphertext:
        return ""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenDecryptError("stored token cannot be decrypted with the configured keys") from None


def token_hash(plaintext: str) -> str:
    """Stable identifier of a token that reveals nothing about it (pass-through accounts, caches)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()
