"""Kimi accounts and the turns they served.

A ``Turn`` row is both the usage record and the lease: it is written when an account is reserved for
one request (status ``in_flight``), and released with an outcome (``done`` or ``refunded``). Usage in a
window is the count of non-refunded turns started inside it; concurrency is the count of in-flight ones.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.choices import AccountSource, AccountState, LimitMode, Origin, Protocol, RefusalSource, TurnStatus


class KimiAccount(models.Model):
    """One Kimi web account the gateway may use.

    Invariants: tokens are stored only encrypted (``accounts.crypto``); ``refresh_token_enc`` is empty
    only for an access-token-only account (which cannot be renewed). ``token_hash`` identifies
    pass-through accounts by the SHA-256 of the client's token and is unique when set. ``__str__`` and
    ``repr`` never show a token. ``origin`` is the deployment every call of the account goes to
    (kimi-web-protocol.md C.5); legacy accounts always use ``KIMI_LEGACY_BASE_URL`` and so keep
    ``kimi.com``. ``refresh_failures`` counts refusals of the refresh in a row that did not say the
    token is dead, since ``refresh_failing_since`` (C.11); a successful refresh zeroes both.
    """

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=16, choices=AccountSource.choices, default=AccountSource.POOL)
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    protocol = models.CharField(max_length=16, choices=Protocol.choices, default=Protocol.CONNECT)
    origin = models.CharField(
        max_length=16,
        choices=Origin.choices,
        default=Origin.KIMI_COM,
        help_text="The deployment this account's calls go to: the one that issued its token.",
    )

    refresh_token_enc = models.TextField(blank=True, default="", editable=False)
    token_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    access_token_enc = models.TextField(blank=True, default="", editable=False)
    access_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Single-flight refresh claim (protocol-neutral): set by the one worker refreshing the token.
    refreshing_until = models.DateTimeField(null=True, blank=True, editable=False)
    # When the stored refresh token expires (its JWT ``exp``; None when unknown or not a JWT).
    token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    refresh_failures = models.PositiveSmallIntegerField(default=0, editable=False)
    refresh_failing_since = models.DateTimeField(null=True, blank=True, editable=False)

    turn_limit = models.PositiveIntegerField(
        default=30, help_text="Turns allowed per window (in learn mode, the cap of the learned limit)."
    )
    limit_mode = models.CharField(
        max_length=8,
        choices=LimitMode.choices,
        default=LimitMode.LEARN,
        help_text="learn: the limit is what the account served when last refused for quota (24 h, never above "
        "the turn limit); pinned: the turn limit is the limit.",
    )
    # Set by an explicit quota refusal (accounts/pool/rules.py): the count served in the window then, and
    # when. Read only through ``rules.effective_limit`` (it expires 24 h after ``learned_at``).
    learned_limit = models.PositiveIntegerField(null=True, blank=True, editable=False)
    learned_at = models.DateTimeField(null=True, blank=True, editable=False)
    window_seconds = models.PositiveIntegerField(default=3 * 3600, help_text="Sliding window length.")
    max_concurrent = models.PositiveIntegerField(default=3, help_text="Streams open at once.")

    state = models.CharField(max_length=16, choices=AccountState.choices, default=AccountState.ACTIVE)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    backoff_level = models.PositiveSmallIntegerField(default=0)

    last_used_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error_message = models.CharField(max_length=500, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    total_turns = models.PositiveIntegerField(default=0)
    total_errors = models.PositiveIntegerField(default=0)

    # What the last check learnt without spending a turn (kimi-web-protocol.md C.10); "" / None = unknown.
    plan = models.CharField(max_length=100, blank=True, default="", editable=False)
    subscription_status = models.CharField(max_length=64, blank=True, default="", editable=False)
    membership_level = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The last check's verdict (accounts/checks.py VERDICTS) and what it said; "" = never checked.
    check_verdict = models.CharField(max_length=16, blank=True, default="", editable=False)
    check_message = models.CharField(max_length=500, blank=True, default="", editable=False)
    # Cross-process claim of the probe scheduler (accounts/probing.py): the one process probing the account
    # sets it with a conditional update; past it, a crashed prober's claim is taken over.
    probe_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    # GetSubscriptionStats rate-limit windows (C.10, 2.10): used ratio (0-1) and reset time, where given.
    stats_5h_ratio = models.FloatField(null=True, blank=True, editable=False)
    stats_5h_reset_at = models.DateTimeField(null=True, blank=True, editable=False)
    stats_7d_ratio = models.FloatField(null=True, blank=True, editable=False)
    stats_7d_reset_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(turn_limit__gte=1) & Q(window_seconds__gte=60) & Q(max_concurrent__gte=1),
                name="account_limits_positive",
            ),
            models.CheckConstraint(
                condition=Q(source=AccountSource.POOL) | Q(token_hash__isnull=False),
                name="passthrough_has_token_hash",
            ),
            models.CheckConstraint(
                condition=Q(protocol=Protocol.CONNECT) | Q(origin=Origin.KIMI_COM),
                name="legacy_account_origin_kimi_com",
            ),
        ]
        indexes = [models.Index(fields=["state", "protocol"])]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<KimiAccount {self.pk} {self.name!r} {self.protocol} {self.state}>"

    @property
    def masked_token(self) -> str:
        return f"...{self.token_last4}" if self.token_last4 else "(none)"


class Turn(models.Model):
    """One chat request that reached (or was about to reach) an upstream account: usage and lease."""

    # Indexed by (account, started_at) below, which also serves lookups by account alone.
    account = models.ForeignKey(KimiAccount, on_delete=models.CASCADE, related_name="turns", db_index=False)
    started_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=TurnStatus.choices, default=TurnStatus.IN_FLIGHT)
    # A lease not released by this time belongs to a dead process and is reclaimed.
    lease_expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["account", "started_at"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"turn {self.pk} on {self.account_id} ({self.status})"


class QuotaRefusal(models.Model):
    """One explicit quota refusal of an account (kimi-web-protocol.md C.13): the evidence a learned
    limit rests on, shown on the account's admin page. ``served`` is how many turns the account had
    served in its window at that moment; ``learned`` the limit taken from it (None for a pinned
    account). A bare HTTP 429 is not recorded: it says nothing about the limit."""

    account = models.ForeignKey(KimiAccount, on_delete=models.CASCADE, related_name="refusals", db_index=False)
    at = models.DateTimeField()
    source = models.CharField(max_length=16, choices=RefusalSource.choices, default=RefusalSource.CHAT)
    served = models.PositiveIntegerField()
    cap = models.PositiveIntegerField(help_text="The account's turn limit at the time.")
    learned = models.PositiveIntegerField(null=True, blank=True)
    reset_at = models.DateTimeField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["account", "at"])]

    def __str__(self) -> str:
        return f"refusal of {self.account_id} at {self.at:%Y-%m-%d %H:%M} after {self.served}"
