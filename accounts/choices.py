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


class AccountSource(models.TextChoices):
    POOL = "pool", "Pool (admin)"
    PASSTHROUGH = "passthrough", "Pass-through token"


class TurnStatus(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    DONE = "done", "Done"
    REFUNDED = "refunded", "Refunded"
