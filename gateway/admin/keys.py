"""Admin for gateway API keys: a UI over ``gateway.records.keys``.

The full key exists only in the response to the add form (a one-time page rendered directly, with
``Cache-Control: no-store``): it goes into no message, session, log or later page. Imported by
``gateway/admin/records.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from gateway.models import ApiKey
from gateway.records.keys import api_key_create, api_key_revoke

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups

    # django-stubs makes ModelForm/ModelAdmin generic, but at runtime they are not subscriptable
    # (no django_stubs_ext).
    _ApiKeyFormBase = forms.ModelForm[ApiKey]
    _ApiKeyAdminBase = admin.ModelAdmin[ApiKey]
else:
    _ApiKeyFormBase = forms.ModelForm
    _ApiKeyAdminBase = admin.ModelAdmin

NEW_KEY_ATTR = "_kimiproxy_new_api_key"  # carries the raw key from save_model to response_add only


class ApiKeyForm(_ApiKeyFormBase):
    allowed_models = forms.CharField(required=False, help_text="Comma-separated model names; empty allows every model.")

    class Meta:
        model = ApiKey
        fields = [
            "name", "rpm_limit", "max_concurrent", "turns_per_day", "repair_turns", "allowed_models",
            "reasoning_format", "local_probes", "native_multiturn",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_models"] = ", ".join(self.instance.allowed_models or [])

    def clean_allowed_models(self) -> list[str]:
        text = self.cleaned_data.get("allowed_models") or ""
        return sorted({part.strip() for part in text.split(",") if part.strip()})


@admin.register(ApiKey)
class ApiKeyAdmin(_ApiKeyAdminBase):
    form = ApiKeyForm
    list_display = [
        "name",
        "visible_prefix",
        "status",
        "rpm_limit",
        "max_concurrent",
        "turns_per_day",
        "repair_turns",
        "models",
        "last_used_at",
        "created_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["visible_prefix", "revoked_at", "last_used_at", "created_at"]
    actions = ["revoke_keys"]

    @admin.display(description="Key")
    def visible_prefix(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else "-"

    @admin.display(description="Status", boolean=False)
    def status(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else "revoked"

    @admin.display(description="Models")
    def models(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models) if obj.allowed_models else "all"

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return self.readonly_fields if obj else []

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> _FieldGroups:
        base: _FieldGroups = list(ApiKeyForm.Meta.fields)
        return [*base, *self.readonly_fields] if obj else base

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ApiKeyForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = api_key_create(
            name=obj.name,
            rpm=obj.rpm_limit,
            allowed_models=obj.allowed_models,
            max_concurrent=obj.max_concurrent,
            turns_per_day=obj.turns_per_day,
            reasoning_format=obj.reasoning_format,
            repair_turns=obj.repair_turns,
            local_probes=obj.local_probes,
            native_multiturn=obj.native_multiturn,
        )
        obj.pk = key.pk
        obj.refresh_from_db()
        obj._state.adding = False
        setattr(request, NEW_KEY_ATTR, raw)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(request, NEW_KEY_ATTR, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "key": obj, "raw_key": raw}
        context["title"] = "API key created"
        response = TemplateResponse(request, "admin/gateway/apikey/key_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_key_revoke(key=key) for key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
