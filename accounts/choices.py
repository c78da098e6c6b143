from django.db import models


class Protocol(models.TextChoices):
    CONNECT = "connect", "Connect-RPC (www.kimi.com)"
    LEGACY = "legacy", "Legacy REST+SSE"


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
