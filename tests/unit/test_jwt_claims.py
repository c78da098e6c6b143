"""Reading a token's claims: its deployment (kimi-web-protocol.md C.5, 2.4.2) and membership level."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.jwt_claims import membership_level, origin_from_claims


@pytest.mark.parametrize(
    ("claims", "origin"),
    [
        ({"iss": "account", "aud": ["kimi.ai"]}, "kimi.ai"),  # the 2026-09 capture (doc 2.4.2)
        ({"aud": "kimi.ai"}, "kimi.ai"),  # aud may be a bare string (RFC 7519)
        ({"aud": ["other", "www.kimi.ai"]}, "kimi.ai"),
        ({"iss": "https://auth.kimi.ai"}, "kimi.ai"),  # an issuer naming the deployment
        ({"iss": "account", "aud": ["kimi.com"]}, "kimi.com"),
        ({"iss": "user-center"}, "kimi.com"),  # legacy and kimi-auth era tokens have no aud
        ({"aud": ["notkimi.ai"]}, "kimi.com"),  # a look-alike is not the deployment
        ({"aud": ["kimi.ai.example.org"]}, "kimi.com"),
        ({}, "kimi.com"),
        (None, "kimi.com"),  # not a JWT at all
    ],
)
def test_it_derives_the_origin_from_aud_or_issuer(claims: dict[str, Any] | None, origin: str) -> None:
    assert origin_from_claims(claims) == origin


@pytest.mark.parametrize(
    ("claims", "level"),
    [
        ({"membership": {"level": 10}}, 10),
        ({"membership": {}}, None),
        ({"membership": {"level": True}}, None),
        ({}, None),
    ],
)
def test_it_reads_the_membership_level(claims: dict[str, Any], level: int | None) -> None:
    assert membership_level(claims) == level
