"""The API key admin: the full key appears once, in the response to the add form, and never again."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

import gateway.admin.keys  # noqa: F401  (registers ApiKey, also imported by gateway/admin/__init__.py)
from gateway.models import ApiKey
from gateway.records.keys import api_key_authenticate
from tests.factories import make_api_key

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),  # see test_accounts_admin.py
]


def test_it_shows_a_new_key_once(admin_client: Client) -> None:
    data = {
        "name": "svc",
        "rpm_limit": 20,
        "max_concurrent": "",
        "turns_per_day": 40,
        "repair_turns": 1,
        "allowed_models": "kimi, kimi-search",
        "reasoning_format": "field",
    }

    response = admin_client.post(reverse("admin:gateway_apikey_add"), data)

    page = response.content.decode()
    raw = page.split('id="new-api-key"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    key = api_key_authenticate(raw=raw)
    assert key is not None and key.name == "svc"
    assert (key.rpm_limit, key.turns_per_day, key.allowed_models) == (20, 40, ["kimi", "kimi-search"])
    assert key.repair_turns == 1
    assert "no-store" in response["Cache-Control"]
    for url in (reverse("admin:gateway_apikey_changelist"), reverse("admin:gateway_apikey_change", args=[key.pk])):
        assert raw not in admin_client.get(url).content.decode()


def test_it_lists_prefix_status_and_models_and_revokes(admin_client: Client) -> None:
    key, raw = make_api_key(name="old", allowed_models=["kimi"])
    page = admin_client.get(reverse("admin:gateway_apikey_changelist")).content.decode()
    assert f"{key.prefix}…" in page and raw not in page and "kimi" in page

    data = {"action": "revoke_keys", "_selected_action": [key.pk]}
    page = admin_client.post(reverse("admin:gateway_apikey_changelist"), data, follow=True).content.decode()
    assert "Revoked 1 key" in page and "revoked" in page
    assert api_key_authenticate(raw=raw) is None
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
