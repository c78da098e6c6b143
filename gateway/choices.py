from django.db import models


class Outcome(models.TextChoices):
    """How a request ended, as the dashboard groups it."""

    PENDING = "pending", "In progress"
    OK = "ok", "OK"
    CLIENT_ERROR = "client_error", "Client error"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    RATE_LIMITED = "rate_limited", "Rate limited"
    CLIENT_CLOSED = "client_closed", "Client closed"
    LOCAL = "local", "Answered locally (no upstream turn)"


class ConversationState(models.TextChoices):
    ACTIVE = "active", "Answer in progress"
    PENDING_DELETE = "pending_delete", "Awaiting delete"
    KEPT = "kept", "Kept for continuation"
    DELETED = "deleted", "Deleted upstream"
    DELETE_FAILED = "delete_failed", "Delete failed (will retry)"


class DriftKind(models.TextChoices):
    """What an upstream shape not understood was (gateway/kimi/drift.py)."""

    FRAME = "frame", "Unknown frame or event kind"
    FIELD = "field", "Unknown mask or field path"
    ERROR = "error", "Unknown error reason"
    CITATION = "citation", "Unmapped citation marker"
