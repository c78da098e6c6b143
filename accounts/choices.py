from django.db import models


class Protocol(models.TextChoices):
    CONNECT = "connect", "Connect-RPC (www.kimi.com)"
    LEGACY = "legacy", "Legacy REST+SSE"


class Origin(models.TextChoices):
    """The deployment an account's calls go to (kimi-web-protocol.md C.5): the one that issued its token."""

    KIMI_COM = "kimi.com", "www.kimi.com"
    KIMI_AI = "kimi.ai", "www.kimi.ai"


class AccountState(models.TextChoices):
    ACTIVE = "active", "Active"
    COOLING = "cooling", "Cooling down"
    EXHAUSTED = "exhausted", "Exhausted"
    INVALID = "invalid", "Invalid token"
    DISABLED = "disabled", "Disabled"


class LimitMode(models.TextChoices):
    """How an account's turn limit is decided (accounts/pool/rules.py ``effective_limit``)."""

    # The limit is the count served when the upstream last refused for quota, for 24 h; the operator's
    # ``turn_limit`` is its cap.
    LEARN = "learn", "Learned from refusals"
    PINNED = "pinned", "Pinned (the operator's limit)"


class RefusalSource(models.TextChoices):
    """Where a quota refusal's evidence came from (kimi-web-protocol.md C.13)."""

    CHAT = "chat", "Chat refused for quota"
    STATS_5H = "stats_5h", "GetSubscriptionStats 5 h"
    STATS_7D = "stats_7d", "GetSubscriptionStats 7 d"


class AccountSource(models.TextChoices):
    POOL = "pool", "Pool (admin)"
    PASSTHROUGH = "passthrough", "Pass-through token"


class TurnStatus(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"
    REFUNDED = "refunded", "Refunded"


class LeaseOutcome(models.TextChoices):
    """How a turn ended, as the pool is told on release (``Turn.outcome``); what each does to the
    account is the table in accounts/pool/rules.py. Not the request log's ``Outcome``
    (gateway/choices.py), which groups whole requests for the dashboard and shares some values."""

    OK = "ok", "OK"
    AUTH = "auth", "Token rejected"
    RATE_LIMITED = "rate_limited", "Rate limited"
    OVERLOADED = "overloaded", "Overloaded"
    UNAVAILABLE = "unavailable", "Unavailable"
    # A refused token refresh (C.11): the token layer has already cooled the account, with its own count.
    REFRESH_REFUSED = "refresh_refused", "Refresh refused"
    TIMEOUT = "timeout", "Timed out"
    STREAM_BUSY = "stream_busy", "Stream busy"
    PROTOCOL_ERROR = "protocol_error", "Protocol error"
    # The code of a bare KimiError (gateway/kimi/base.py): treated like a 5xx.
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    CLIENT_CLOSED = "client_closed", "Client closed"
    BAD_REQUEST = "bad_request", "Bad request"
    CONTENT_FILTERED = "content_filtered", "Content filtered"
    # Written by lease_reclaim_stale only, never passed to a release.
    LEASE_EXPIRED = "lease_expired", "Lease expired"
