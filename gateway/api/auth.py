"""Authentication at the HTTP edge for the DRF views (``/v1/models``): gateway keys, then pass-through tokens.

One rule for bearer credentials (gateway/records/callers.py): ``sk-`` keys are gateway keys (looked up
by hash, gateway/records/keys.py); anything else is one or more Kimi tokens when pass-through is on.
The chat pipeline authenticates through the same rule in its accept stage (gateway/chat/accept.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.jwt_claims import jwt_claims
from gateway.models import ApiKey
from gateway.openai.errors import GatewayError
from gateway.records.callers import passthrough_tokens
from gateway.records.keys import api_key_authenticate


def bearer_credential(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``; None without one (or another scheme).
    A malformed Bearer header is refused (401)."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <key>'.")
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("Invalid API key.") from None


class ApiKeyPrincipal:
    """``request.user`` for a request authenticated by an API key (keys have no Django user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: ApiKey) -> None:
        self.api_key = key
        self.pk = None
        self.username = f"apikey:{key.name}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    """``request.auth`` is the ``ApiKey``. A missing header yields None (DRF answers 401, since
    ``authenticate_header`` names the Bearer scheme); a wrong or revoked key fails with 401."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = bearer_credential(request)
        if raw is None or not raw.startswith("sk-"):
            return None  # no bearer credential, or not a gateway key: pass-through authentication may take it
        key = api_key_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class PassthroughAuthentication(BaseAuthentication):
    """Lets pass-through callers (Kimi tokens as the bearer) list models too; keys are handled first.

    Listing models spends no upstream call, so the tokens are not tried upstream: each must be shaped as
    Kimi's are (a JWT), anything else is refused as an unknown key would be. Nothing is stored: the
    pass-through account is created when the token first asks for an answer."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).decode("latin-1")
        if not header or header.split(" ", 1)[-1].strip().startswith("sk-") or not settings.KIMIPROXY_PASSTHROUGH:
            return None
        try:
            tokens = passthrough_tokens(authorization=header)
        except GatewayError as error:
            raise exceptions.AuthenticationFailed(error.message) from None
        if not all(jwt_claims(token) for token in tokens):
            raise exceptions.AuthenticationFailed("Invalid API key (not a gateway key, nor a Kimi token).")
        return _Principal(), None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class _Principal:
    is_authenticated = True
    is_anonymous = False
