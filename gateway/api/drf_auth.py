"""DRF authentication with gateway API keys (``Authorization: Bearer sk-kp-...``); rules live in keys.py."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from gateway.models import ApiKey
from gateway.records.keys import api_key_authenticate


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
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected 'Bearer <key>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        if not raw.startswith("sk-"):
            return None  # not a gateway key: pass-through authentication may take it
        key = api_key_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
