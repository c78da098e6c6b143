"""Where an account's calls go: the hosts of its deployment (kimi-web-protocol.md C.5, 2.1).

Since 2026-08 www.kimi.ai (auth host auth.kimi.ai) serves next to www.kimi.com (auth.kimi.com), and
whether one deployment honours the other's tokens is unproven, so each account keeps the deployment
that issued its token (``KimiAccount.origin``) and every call of it goes there. The URLs come from
settings at call time: an operator (or a test) may point a deployment elsewhere.
"""

from __future__ import annotations

import dataclasses

from django.conf import settings


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """``base``: chat, files and every other RPC; ``auth``: the token refresh."""

    base: str
    auth: str


def endpoints_for(*, protocol: str, origin: str) -> Endpoints:
    """The hosts for an account of ``protocol`` at ``origin`` (``kimi.com`` or ``kimi.ai``).

    The legacy protocol has one host for everything, refresh included (doc 1.4.2), and is only known
    on the kimi.com side, so a legacy account always uses ``KIMI_LEGACY_BASE_URL``."""
    if protocol == "legacy":
        return Endpoints(base=settings.KIMI_LEGACY_BASE_URL, auth=settings.KIMI_LEGACY_BASE_URL)
    if origin == "kimi.ai":
        return Endpoints(base=settings.KIMI_AI_BASE_URL, auth=settings.KIMI_AI_AUTH_URL)
    return Endpoints(base=settings.KIMI_BASE_URL, auth=settings.KIMI_AUTH_URL)
