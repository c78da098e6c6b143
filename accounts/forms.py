"""Admin forms for accounts. The token field is write-only: ``PasswordInput(render_value=False)`` never
puts a value back into the page, and the import page is always rendered empty after a submit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings

from accounts.choices import LimitMode, Origin, Protocol
from accounts.models import KimiAccount
from accounts.services import token_inspect, token_normalize

if TYPE_CHECKING:
    # django-stubs makes ModelForm generic, but at runtime it is not subscriptable (no django_stubs_ext).
    _KimiAccountFormBase = forms.ModelForm[KimiAccount]
else:
    _KimiAccountFormBase = forms.ModelForm


class KimiAccountForm(_KimiAccountFormBase):
    """Add/change form. On add the token is required and an empty protocol means "detect it"."""

    new_token = forms.CharField(
        label="Token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 60}),
        help_text="The account's refresh token (from kimi.com localStorage). Never shown again; "
        "leave empty to keep the current one.",
    )

    class Meta:
        model = KimiAccount
        fields = ["name", "protocol", "origin", "turn_limit", "limit_mode", "window_seconds", "max_concurrent"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["limit_mode"].required = False  # empty: learn, the default of new accounts
        if self.instance.pk is None:
            self.fields["new_token"].required = True
            self.fields["new_token"].help_text = "The account's refresh token (from kimi.com localStorage)."
            self.fields["protocol"] = forms.ChoiceField(
                choices=[("", "Detect from the token"), *Protocol.choices], required=False
            )
            self.fields["origin"] = forms.ChoiceField(
                choices=[("", "Detect from the token"), *Origin.choices],
                required=False,
                help_text="The deployment the account's calls go to (kimi.ai tokens: www.kimi.ai).",
            )
            self.initial.setdefault("turn_limit", settings.KIMIPROXY_DEFAULT_TURN_LIMIT)
            self.initial.setdefault("window_seconds", round(settings.KIMIPROXY_DEFAULT_WINDOW_HOURS * 3600))

    def clean_new_token(self) -> str:
        value = self.cleaned_data.get("new_token") or ""
        return token_normalize(value) if value else ""

    def clean(self) -> dict[str, Any]:
        # BaseModelForm.clean() returns self.cleaned_data; the stubs allow None for Form.clean overrides.
        data = cast("dict[str, Any]", super().clean())
        token = data.get("new_token")
        data["limit_mode"] = data.get("limit_mode") or self.instance.limit_mode or LimitMode.LEARN
        if self.instance.pk is None and not data.get("protocol"):
            # Without a valid token the form fails anyway; connect keeps the model from adding a second error.
            data["protocol"] = token_inspect(token).protocol if token else Protocol.CONNECT
        if self.instance.pk is None and not data.get("origin"):
            # Legacy accounts have one host; a Connect account goes where its token was issued (C.5).
            detected = token_inspect(token).origin if token else Origin.KIMI_COM
            data["origin"] = Origin.KIMI_COM if data.get("protocol") == Protocol.LEGACY else detected
        return data


class AccountImportForm(forms.Form):
    tokens = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 100, "autocomplete": "off", "spellcheck": "false"}),
        help_text="One token per line, or name,token. Blank lines and lines starting with # are skipped.",
    )
