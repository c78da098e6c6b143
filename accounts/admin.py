"""Admin for Kimi accounts: a UI over ``accounts.services``; columns come from one annotated query.

No plaintext token is ever rendered: the list and change pages show ``masked_token`` only, the token
input is write-only, and the import result page lists names, never tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import selectors, services
from accounts.choices import AccountState
from accounts.forms import AccountImportForm, KimiAccountForm
from accounts.models import KimiAccount
from accounts.pool.refusals import refusals_recent

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups

    # django-stubs makes ModelAdmin generic, but at runtime it is not subscriptable (no django_stubs_ext).
    _KimiAccountAdminBase = admin.ModelAdmin[KimiAccount]
else:
    _KimiAccountAdminBase = admin.ModelAdmin

# Keyed by plain state strings: a TextChoices member hashes and compares like its value.
STATE_COLOURS: dict[str, str] = {
    AccountState.ACTIVE: "#2e7d32",
    AccountState.COOLING: "#ef6c00",
    AccountState.EXHAUSTED: "#6a1b9a",
    AccountState.INVALID: "#c62828",
    AccountState.DISABLED: "#616161",
}
ADD_FIELDS = ["name", "new_token", "protocol", "origin", "turn_limit", "limit_mode", "window_seconds", "max_concurrent"]
CHANGE_FIELDS = [
    "name", "masked_token", "new_token", "protocol", "origin", "source", "state",
    "turn_limit", "limit_mode", "limit_now", "refusal_evidence", "window_seconds", "max_concurrent",
    "cooldown_until", "backoff_level", "token_expires_at", "access_expires_at", "last_used_at",
    "last_error_code", "last_error_message", "last_error_at", "refresh_failures", "refresh_failing_since",
    "plan", "subscription_status", "membership_level", "checked_at", "check_verdict", "check_message",
    "stats_5h_ratio", "stats_5h_reset_at", "stats_7d_ratio", "stats_7d_reset_at",
    "total_turns", "total_errors", "created_at",
]  # fmt: skip
EDITABLE = {"name", "new_token", "protocol", "origin", "turn_limit", "limit_mode", "window_seconds", "max_concurrent"}


@admin.register(KimiAccount)
class KimiAccountAdmin(_KimiAccountAdminBase):
    form = KimiAccountForm
    list_display = [
        "name",
        "masked_token",
        "protocol",
        "origin",
        "state_badge",
        "last_error",
        "until",
        "last_probe",
        "usage",
        "in_flight_streams",
        "last_used_at",
        "plan",
    ]
    list_filter = ["state", "protocol", "origin", "source"]
    search_fields = ["name"]
    actions = ["enable_accounts", "disable_accounts", "check_accounts", "clear_cooldowns", "reset_windows"]

    # --- queryset and columns (annotations only, no per-row queries) ---------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[KimiAccount]:
        return selectors.accounts_for_admin(now=timezone.now(), queryset=super().get_queryset(request))

    @admin.display(description="Token")
    def masked_token(self, obj: KimiAccount) -> str:
        return obj.masked_token

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj: KimiAccount) -> str:
        colour = STATE_COLOURS.get(obj.state, "#616161")
        return format_html(
            '<span style="background:{};color:#fff;padding:1px 7px;border-radius:8px">{}</span>',
            colour,
            obj.get_state_display(),
        )

    @admin.display(description="Used / limit")
    def usage(self, obj: KimiAccount) -> str:
        usage = selectors.usage_from_annotations(account=obj, now=timezone.now())
        text = f"{usage.used} / {usage.limit}"
        if usage.next_free_at:
            text += f" (next frees {timezone.localtime(usage.next_free_at):%H:%M})"
        return text

    @admin.display(description="Limit now")
    def limit_now(self, obj: KimiAccount) -> str:
        now = timezone.now()
        source = selectors.limit_source(account=obj, now=now)
        limit = selectors.limit_of(account=obj, now=now)
        if source == "learned":
            assert obj.learned_at is not None
            return (
                f"{limit} (learned from a quota refusal at {timezone.localtime(obj.learned_at):%Y-%m-%d %H:%M}, "
                f"holds 24 h after the last refusal; cap {obj.turn_limit})"
            )
        return f"{limit} ({'pinned by the operator' if source == 'pinned' else 'the cap: nothing learned now'})"

    @admin.display(description="Quota refusals (the evidence)")
    def refusal_evidence(self, obj: KimiAccount) -> str:
        """The latest explicit quota refusals a learned limit rests on (change page only: one query)."""
        rows = refusals_recent(account=obj)
        if not rows:
            return "none recorded"
        items = format_html_join(
            "",
            "<li>{}: {} after {} turns (cap {}; learned {}; reset {}) {}</li>",
            (
                (
                    f"{timezone.localtime(r.at):%Y-%m-%d %H:%M}",
                    r.get_source_display(),
                    r.served,
                    r.cap,
                    r.learned if r.learned is not None else "-",
                    f"{timezone.localtime(r.reset_at):%Y-%m-%d %H:%M}" if r.reset_at else "-",
                    r.message,
                )
                for r in rows
            ),
        )
        return format_html("<ul style='margin:0'>{}</ul>", items)

    @admin.display(description="In flight")
    def in_flight_streams(self, obj: KimiAccount) -> str:
        return f"{obj.in_flight} / {obj.max_concurrent}"  # type: ignore[attr-defined]

    @admin.display(description="Reason (last error)")
    def last_error(self, obj: KimiAccount) -> str:
        if not obj.last_error_code:
            return "-"
        return f"{obj.last_error_code}: {obj.last_error_message[:80]}"

    @admin.display(description="Until", ordering="cooldown_until")
    def until(self, obj: KimiAccount) -> str:
        """When a cooling or exhausted account serves again (its cooldown or the upstream's reset time)."""
        if obj.cooldown_until is None or obj.cooldown_until <= timezone.now():
            return "-"
        return f"{timezone.localtime(obj.cooldown_until):%Y-%m-%d %H:%M}"

    @admin.display(description="Last probe", ordering="checked_at")
    def last_probe(self, obj: KimiAccount) -> str:
        if obj.checked_at is None:
            return "never"
        said = f": {obj.check_message[:60]}" if obj.check_message else ""
        return f"{timezone.localtime(obj.checked_at):%Y-%m-%d %H:%M} {obj.check_verdict or '?'}{said}"

    # --- add / change ---------------------------------------------------------------------------------
    def get_fields(self, request: HttpRequest, obj: KimiAccount | None = None) -> _FieldGroups:
        return list(CHANGE_FIELDS if obj else ADD_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: KimiAccount | None = None) -> list[str]:
        return [f for f in CHANGE_FIELDS if f not in EDITABLE] if obj else []

    def save_model(self, request: HttpRequest, obj: KimiAccount, form: KimiAccountForm, change: bool) -> None:
        token = form.cleaned_data.get("new_token", "")
        if change:
            super().save_model(request, obj, form, change)
            if "origin" in form.changed_data:  # drops the other deployment's cached access token (C.5)
                services.account_set_origin(account=obj, origin=obj.origin)
            warnings = services.account_set_token(account=obj, token=token) if token else []
        else:
            account, warnings = services.account_create(
                name=obj.name,
                token=token,
                protocol=obj.protocol or None,
                origin=obj.origin or None,
                limit=obj.turn_limit,
                window_hours=obj.window_seconds / 3600,
                max_concurrent=obj.max_concurrent,
                limit_mode=obj.limit_mode,
            )
            obj.pk = account.pk
            obj.refresh_from_db()
            obj._state.adding = False
        for warning in warnings:
            self.message_user(request, warning, messages.WARNING)

    # --- actions: each one loops and calls a service ------------------------------------------------
    @admin.action(description="Enable selected accounts")
    def enable_accounts(self, request: HttpRequest, queryset: QuerySet[KimiAccount]) -> None:
        for account in queryset:
            services.account_enable(account=account)
        self.message_user(request, f"Enabled {len(queryset)} account(s).")

    @admin.action(description="Disable selected accounts")
    def disable_accounts(self, request: HttpRequest, queryset: QuerySet[KimiAccount]) -> None:
        for account in queryset:
            services.account_disable(account=account)
        self.message_user(request, f"Disabled {len(queryset)} account(s).")

    @admin.action(description="Probe now (refresh and read the plan; no chat turn)")
    def check_accounts(self, request: HttpRequest, queryset: QuerySet[KimiAccount]) -> None:
        for account in queryset:
            state = account.state
            result = services.account_check_now(account=account)
            account.refresh_from_db()
            level = messages.SUCCESS if result.live else messages.ERROR
            facts = result.facts
            detail = f"plan {facts.plan or 'unknown'}" if facts else result.message
            self.message_user(request, f"{account.name}: {result.verdict} ({detail})", level)
            change = state if state == account.state else f"{state} -> {account.state}"
            self.log_change(request, account, f"Probed now: {result.verdict} ({detail[:100]}); {change}.")

    @admin.action(description="Clear cooldown (cooling or exhausted -> active; usage keeps counting)")
    def clear_cooldowns(self, request: HttpRequest, queryset: QuerySet[KimiAccount]) -> None:
        for account in queryset:
            until = account.cooldown_until
            revived = services.account_clear_cooldown(account=account)
            was = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "without a time"
            self.log_change(request, account, f"Cleared the cooldown (was {was}); now {account.state}.")
            if not revived:
                self.message_user(request, f"{account.name} is {account.state}: only its timer was cleared.")
        self.message_user(request, f"Cleared the cooldown of {len(queryset)} account(s).")

    @admin.action(description="Reset usage window")
    def reset_windows(self, request: HttpRequest, queryset: QuerySet[KimiAccount]) -> None:
        for account in queryset:
            services.account_reset_window(account=account)
        self.message_user(request, f"Reset the usage window of {len(queryset)} account(s).")

    # --- bulk import ----------------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="accounts_kimiaccount_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        result = None
        form = AccountImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            result = services.accounts_import(lines=form.cleaned_data["tokens"].splitlines())
            form = AccountImportForm()  # never echo the pasted tokens back
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Import Kimi accounts",
            "opts": self.model._meta,
            "form": form,
            "result": result,
        }
        response = TemplateResponse(request, "admin/accounts/kimiaccount/import.html", context)
        response["Cache-Control"] = "no-store"
        return response
