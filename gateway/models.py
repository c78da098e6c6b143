"""Gateway keys, request logs, the upstream conversations the gateway created, upstream drift."""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models

from accounts.choices import Protocol
from accounts.models import KimiAccount
from gateway.choices import ConversationState, DriftKind, Outcome


class ApiKey(models.Model):
    """A gateway key an internal client uses (``Authorization: Bearer sk-...``).

    Only the SHA-256 of the key and a short visible prefix are stored; the key itself is shown once,
    when created. ``allowed_models`` empty means every model. ``reasoning_format`` is the default for
    requests that do not send their own.
    """

    class ReasoningFormat(models.TextChoices):
        FIELD = "field", "reasoning_content field"
        THINK_TAGS = "think_tags", "<think> tags in content"
        HIDDEN = "hidden", "hidden"

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty = no limit.")
    max_concurrent = models.PositiveIntegerField(null=True, blank=True, help_text="Open streams; empty = no limit.")
    turns_per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Upstream turns in any rolling 24 hours (refunded ones and local answers do not count); "
        "empty = no limit.",
    )
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names; empty = all.")
    reasoning_format = models.CharField(max_length=16, choices=ReasoningFormat.choices, default=ReasoningFormat.FIELD)
    repair_turns = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(3)],
        help_text="Extra upstream turns a collected answer may spend on a repair (a tool call failing its "
        "schema, invalid JSON output); 0 = none. Each one spends the account's limit.",
    )
    local_probes = models.BooleanField(
        default=True,
        help_text="Answer clients' probes (Messages / Responses requests with max_tokens <= 1) locally, "
        "without spending an upstream turn.",
    )
    native_multiturn = models.BooleanField(
        default=False,
        help_text="Continue the same Kimi chat when a client resends its history (native multi-turn). This "
        "KEEPS each conversation's chat on Kimi between turns, until it has been idle for the kept-conversation "
        "TTL (KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS, 24 h by default), instead of deleting it after each answer.",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RequestLog(models.Model):
    """One row per request the API accepted or rejected; written on accept, finalised exactly once.

    ``outcome`` stays ``pending`` until the request ends; the final write sets it together with the
    status, latencies and counts. Prompts and answers are stored only as 200-character previews, and
    only when the operator enables ``KIMIPROXY_LOG_PREVIEWS``.
    """

    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()  # indexed by (created_at, outcome) below
    finished_at = models.DateTimeField(null=True, blank=True)
    # No single-column indexes on the two keys: the (key, created_at) indexes below lead with them, and
    # every index is one more write for each request's insert and final update (bench/README.md).
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs", db_index=False
    )
    passthrough_hash = models.CharField(max_length=64, blank=True, default="")
    account = models.ForeignKey(
        KimiAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs", db_index=False
    )
    path = models.CharField(max_length=100, default="/v1/chat/completions")
    model = models.CharField(max_length=100, blank=True, default="")
    flags = models.JSONField(default=list, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    prompt_chars = models.PositiveIntegerField(default=0)
    completion_chars = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    upstream_chat_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user = models.CharField(max_length=200, blank=True, default="")
    prompt_preview = models.CharField(max_length=200, blank=True, default="")
    answer_preview = models.CharField(max_length=200, blank=True, default="")
    # Client tools (gateway/tools/): what the parser saw in the answer. ``tool_outcome`` is ParseStats's
    # (text | tool_calls | tool_call_missing | tool_call_malformed; empty: no tools declared).
    tools_declared = models.PositiveSmallIntegerField(default=0)
    tool_block_seen = models.BooleanField(default=False)
    tool_outcome = models.CharField(max_length=24, blank=True, default="")
    tool_calls = models.PositiveSmallIntegerField(default=0)
    # Extra upstream turns spent repairing the answer (a call failing its schema, invalid JSON output).
    repairs = models.PositiveSmallIntegerField(default=0)
    # Native multi-turn (gateway/chat/native.py): which path served a request of a caller with the mode on
    # ("" when off), and the prompt bytes (UTF-8) a native continuation did not send (the flattened history
    # minus what went upstream).
    turn_path = models.CharField(max_length=16, blank=True, default="")
    prompt_bytes_saved = models.PositiveIntegerField(default=0)
    tool_unknown_names = models.JSONField(default=list, blank=True)  # names the model called, not offered

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at", "outcome"]),
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status_code}"


class Conversation(models.Model):
    """An upstream chat the gateway created, recorded before its first use.

    Unless kept for continuation, it is deleted upstream right after the answer; a failed delete
    leaves the row in ``delete_failed`` for ``cleanup_conversations``. Kept chats belong to the key (or
    pass-through token hash) that started them and expire after an idle time.
    """

    # Indexed by (account, chat_id) below, which also serves lookups by account alone.
    account = models.ForeignKey(KimiAccount, on_delete=models.CASCADE, related_name="conversations", db_index=False)
    chat_id = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, choices=ConversationState.choices, default=ConversationState.ACTIVE)
    kept = models.BooleanField(default=False)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    owner_hash = models.CharField(max_length=64, blank=True, default="")
    parent_message_id = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField()
    delete_attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")
    # Claimed by one cleanup worker at a time (conditional update).
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Native multi-turn (gateway/chat/native.py): what the kept chat holds, its tool envelope nonce and the
    # client's session hint (hashed). Database defaults: the hand-written INSERT above need not name them.
    native_fingerprint = models.CharField(max_length=64, blank=True, default="", db_default="", db_index=True)
    native_nonce = models.CharField(max_length=64, blank=True, default="", db_default="")
    native_hint = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        indexes = [
            models.Index(fields=["state", "last_used_at"]),
            models.Index(fields=["account", "chat_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.chat_id or '(pending)'} on {self.account_id} ({self.state})"


class StoredResponse(models.Model):
    """A Responses answer kept for ``GET /v1/responses/{id}`` and ``previous_response_id`` (``store``).

    It belongs to the key (or pass-through token hash) that asked, as kept conversations do, and names
    the kept upstream chat it continues by account and chat id (the conversation row may be swept
    before it: continuing then finds no conversation). Expires with the kept-conversation TTL.
    """

    id = models.CharField(max_length=100, primary_key=True)
    owner_hash = models.CharField(max_length=64)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE)
    account = models.ForeignKey(KimiAccount, null=True, blank=True, on_delete=models.SET_NULL)
    chat_id = models.CharField(max_length=64, blank=True, default="")
    previous_response_id = models.CharField(max_length=100, blank=True, default="")
    message_id = models.CharField(max_length=64, blank=True, default="")  # its upstream answer (a fork's parent)
    body = models.JSONField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"]), models.Index(fields=["chat_id"])]

    def __str__(self) -> str:
        return f"{self.id} (chat {self.chat_id or '-'})"


class UploadedFile(models.Model):
    """An upload result cached per account by content hash, so re-sent history is not uploaded again."""

    account = models.ForeignKey(KimiAccount, on_delete=models.CASCADE, related_name="uploads")
    sha256 = models.CharField(max_length=64)
    file_id = models.CharField(max_length=100)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16)
    size = models.PositiveBigIntegerField(default=0)
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "sha256"], name="upload_once_per_account")]

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:12]}) on {self.account_id}"


class UpstreamDrift(models.Model):
    """An upstream shape the gateway did not understand, per account and protocol (gateway/kimi/drift.py).

    One row per (account, protocol, kind, key): ``count`` is how often it was seen since ``first_seen``,
    added with the request's final write (an increment, so concurrent writers never lose counts), and
    ``samples`` the first few redacted examples (structure only: no token, id or text).
    """

    # Indexed by the unique constraint below, which leads with it.
    account = models.ForeignKey(KimiAccount, on_delete=models.CASCADE, related_name="drift", db_index=False)
    protocol = models.CharField(max_length=16, choices=Protocol.choices)
    kind = models.CharField(max_length=16, choices=DriftKind.choices)
    key = models.CharField(max_length=200)
    count = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    samples = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "protocol", "kind", "key"], name="drift_once_per_key")
        ]
        verbose_name = "upstream drift"
        verbose_name_plural = "upstream drift"

    def __str__(self) -> str:
        return f"{self.protocol} {self.kind} {self.key} on {self.account_id}: {self.count}"


# --- Hourly rollups behind the dashboard (owned by the dashboard; see gateway/dashboard/rollup.py) ----


class RequestRollup(models.Model):
    """Finished requests per hour, counted along one dimension at a time.

    Every rolled-up hour has a ``total`` row (even with zero requests), so the latest ``total`` hour is
    the watermark: hours before it come from here, later ones from ``RequestLog`` itself. Rows are
    rebuilt per hour (delete + insert), never incremented, so a rerun cannot double-count.
    """

    class Dimension(models.TextChoices):
        TOTAL = "total", "Total"
        OUTCOME = "outcome", "Outcome"
        ERROR = "error", "Error code"
        MODEL = "model", "Model"
        API_KEY = "api_key", "API key id"

    hour = models.DateTimeField()
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    value = models.CharField(max_length=100, blank=True, default="")
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dimension", "hour", "value"], name="rollup_once_per_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.dimension}={self.value}: {self.requests}"


class LatencyRollup(models.Model):
    """Histogram of successful requests' latencies per hour (log-scale buckets, ``dashboard.histogram``).

    Percentiles over long ranges merge these histograms: within about 2.5 % of the exact value.
    """

    class Metric(models.TextChoices):
        TTFT = "ttft", "Time to first token"
        LATENCY = "latency", "Total latency"

    hour = models.DateTimeField()
    metric = models.CharField(max_length=8, choices=Metric.choices)
    bucket = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "metric", "bucket"], name="latency_bucket_once")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.metric}[{self.bucket}]: {self.count}"
