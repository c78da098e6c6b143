"""Admin for the gateway's records: read-only request logs, and upstream conversations with one action.

API keys live in ``gateway/admin/keys.py``. Every action calls a service (STYLE.md, convention 11).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from gateway.choices import ConversationState
from gateway.models import Conversation, RequestLog

if TYPE_CHECKING:
    # django-stubs makes ModelAdmin generic, but at runtime it is not subscriptable (no django_stubs_ext).
    _ReadOnlyAdminBase = admin.ModelAdmin[Any]
else:
    _ReadOnlyAdminBase = admin.ModelAdmin

admin.site.site_header = "kimiproxy"
admin.site.site_title = "kimiproxy admin"
admin.site.index_title = "Administration"


def state_badge(value: str, label: str) -> SafeString:
    return SafeString(render_to_string("dashboard/_state_badge.html", {"state": value, "label": label}).strip())


class ReadOnlyAdmin(_ReadOnlyAdminBase):
    """Records written by the gateway itself: viewable, never edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    date_hierarchy = "created_at"
    list_display = [
        "created_at", "request_id", "outcome_badge", "status_code", "model", "account", "api_key", "stream",
        "ttft_ms", "latency_ms", "error_code",
    ]  # fmt: skip
    list_filter = ["status_code", "outcome", "error_code", "model", "account", "api_key", "stream", "tool_outcome"]
    search_fields = ["=upstream_chat_id", "=request_id"]
    search_help_text = "Exact upstream chat id or request id."
    list_select_related = ["account", "api_key"]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is not worth it
    list_per_page = 50
    fieldsets = [
        ("Request", {"fields": ["request_id", "created_at", "finished_at", "path", "model", "flags", "stream"]}),
        ("Caller", {"fields": ["api_key", "user", "client_ip"]}),
        ("Outcome", {"fields": ["outcome", "status_code", "error_code", "error_message", "attempts"]}),
        ("Timing", {"fields": ["ttft_ms", "latency_ms"]}),
        ("Upstream", {"fields": ["account", "upstream_chat_id"]}),
        ("Size", {"fields": ["prompt_chars", "completion_chars", "prompt_tokens", "completion_tokens"]}),
        (
            "Client tools",
            {
                "fields": [
                    "tools_declared",
                    "tool_block_seen",
                    "tool_outcome",
                    "tool_calls",
                    "tool_unknown_names",
                    "repairs",
                ]  # fmt: skip
            },
        ),
        ("Previews", {"fields": ["prompt_preview", "answer_preview"], "classes": ["collapse"]}),
    ]

    class Media:
        css = {"all": ["kimiproxy/request_log_list.css"]}  # the list fits or scrolls at 1400 px

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: RequestLog) -> SafeString:
        return state_badge(obj.outcome, obj.get_outcome_display())


class LeftoverFilter(admin.SimpleListFilter):
    """Chats that are still upstream although they should not be, the same rule the dashboard counts."""

    title = "cleanup"
    parameter_name = "cleanup"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("leftover", "Awaiting cleanup"), ("kept", "Kept (any age)"), ("expired", "Kept past TTL")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        expired = Q(state=ConversationState.KEPT, last_used_at__lt=timezone.now() - kept_ttl())
        waiting = Q(state__in=[ConversationState.PENDING_DELETE, ConversationState.DELETE_FAILED])
        choice = self.value()
        if choice == "leftover":
            return queryset.filter(waiting | expired)
        if choice == "kept":
            return queryset.filter(state=ConversationState.KEPT)
        if choice == "expired":
            return queryset.filter(expired)
        return queryset


class NativeFilter(admin.SimpleListFilter):
    """Chats kept by native multi-turn (a resent history continues them) or by an explicit conversation_id."""

    title = "kept by"
    parameter_name = "kept_by"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Conversation]) -> list[tuple[str, str]]:
        return [("native", "native multi-turn"), ("explicit", "conversation_id")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        kept = queryset.filter(kept=True)
        if self.value() == "native":
            return kept.exclude(native_fingerprint="")
        if self.value() == "explicit":
            return kept.filter(native_fingerprint="")
        return queryset


def kept_ttl() -> timedelta:
    return timedelta(hours=settings.KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "chat_id", "account", "state_badge", "kept", "native", "age", "last_used_at", "delete_attempts",
        "last_error",
    ]  # fmt: skip
    list_filter = [LeftoverFilter, NativeFilter, "state", "kept", "account"]
    search_fields = ["=chat_id", "=request_id"]
    list_select_related = ["account"]
    ordering = ["-created_at"]
    actions = ["delete_upstream_now"]
    exclude = ["owner_hash", "native_fingerprint", "native_nonce", "native_hint"]

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Conversation) -> SafeString:
        return state_badge(obj.state, obj.get_state_display())

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: Conversation) -> str:
        return timesince(obj.created_at)

    @admin.display(description="native", boolean=True)
    def native(self, obj: Conversation) -> bool:
        """Kept by native multi-turn: a resent history can continue it (gateway/chat/native.py)."""
        return bool(obj.native_fingerprint)

    def has_delete_upstream_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_conversation")

    @admin.action(description="Delete upstream now", permissions=["delete_upstream"])
    def delete_upstream_now(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        from gateway.records.conversations import conversations_delete_now

        ids = list(queryset.values_list("pk", flat=True))
        deleted, failed = conversations_delete_now(conversation_ids=ids)
        if failed:
            self.message_user(
                request,
                f"Deleted {deleted} upstream; {failed} failed and stay for cleanup_conversations to retry.",
                messages.WARNING,
            )
        else:
            self.message_user(request, f"Deleted {deleted} conversation(s) upstream.", messages.SUCCESS)
