"""The upstream: ``session_for(account)`` picks the protocol client (see ``base.py`` for the interface)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import KimiAccount
    from gateway.kimi.base import KimiSession
    from gateway.kimi.transport.http import UpstreamHTTP

__all__ = ["session_for"]


def session_for(
    account: KimiAccount, *, http: UpstreamHTTP | None = None, clock: Callable[[], datetime] | None = None
) -> KimiSession:
    """A session for ``account`` over its protocol (``connect`` or ``legacy``), every call of it sent to
    the account's origin (kimi-web-protocol.md C.5). ``http`` defaults to the process's shared upstream
    client (``gateway.kimi.transport.http.upstream_client``); ``clock`` dates refresh failures (tests pass one)."""
    # Imported here so that ``gateway.kimi.base`` stays importable without Django set up.
    from gateway.kimi.connect import session as connect
    from gateway.kimi.connect.catalogue import Catalogue
    from gateway.kimi.connect.catalogue_cache import catalogue_get
    from gateway.kimi.legacy import session as legacy
    from gateway.kimi.origins import endpoints_for
    from gateway.kimi.tokens import DbTokenSource, TokenPair
    from gateway.kimi.transport.http import upstream_client

    if account.protocol not in ("connect", "legacy"):
        raise ValueError(f"unknown upstream protocol {account.protocol!r}")
    module = legacy if account.protocol == "legacy" else connect
    endpoints = endpoints_for(protocol=account.protocol, origin=account.origin)

    async def refresher(refresh_token: str) -> TokenPair:
        # Chosen by name rather than as `module.refresh_tokens`: a module object's attributes are Any to mypy.
        refresh = legacy.refresh_tokens if module is legacy else connect.refresh_tokens
        return await refresh(http or upstream_client(), refresh_token, auth_url=endpoints.auth)

    tokens = DbTokenSource(account_id=account.pk, refresher=refresher, preloaded=account, clock=clock)
    if module is legacy:
        return legacy.LegacySession(tokens=tokens, http=http, endpoints=endpoints)

    async def catalogue() -> Catalogue:
        return await catalogue_get(base_url=endpoints.base, http=http)  # the account's deployment (C.7)

    return connect.ConnectSession(tokens=tokens, http=http, endpoints=endpoints, catalogue=catalogue)
