"""Gateway API keys (gateway.records.keys) and the DRF authentication class that uses them."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from gateway.api.auth import ApiKeyAuthentication
from gateway.models import ApiKey
from gateway.records.keys import api_key_authenticate, api_key_create, api_key_model_allowed, api_key_revoke
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


class WhoAmI(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"key": request.auth.name, "user": str(request.user)})


def call(authorization: str | None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return WhoAmI.as_view()(APIRequestFactory().get("/whoami", **headers))


def test_it_creates_a_key_and_stores_only_its_hash_and_prefix() -> None:
    key, raw = api_key_create(name="ci", rpm=60, allowed_models=[" kimi ", "kimi-search", ""], max_concurrent=4)
    assert raw.startswith("sk-kp-") and len(raw) == 46
    assert (key.prefix, key.key_hash) == (raw[:12], hashlib.sha256(raw.encode()).hexdigest())
    assert (key.rpm_limit, key.max_concurrent, key.allowed_models) == (60, 4, ["kimi", "kimi-search"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM gateway_apikey WHERE id = %s", [key.pk])
        row = cursor.fetchone()
    assert not any(raw in str(value) or raw[12:] in str(value) for value in row)
    assert raw not in str(key) and raw not in repr(key)


def test_it_refuses_duplicate_names_and_bad_limits() -> None:
    make_api_key(name="dup")
    with pytest.raises(ValidationError, match="already exists"):
        api_key_create(name="dup")
    with pytest.raises(ValidationError, match="at least 1"):
        api_key_create(name="zero", rpm=0)
    with pytest.raises(ValidationError, match="empty"):
        api_key_create(name="  ")
    assert ApiKey.objects.count() == 1


def test_it_authenticates_by_hash_and_refuses_unknown_or_revoked_keys() -> None:
    key, raw = make_api_key()
    assert api_key_authenticate(raw=f" {raw} ") == key
    assert api_key_authenticate(raw=raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert api_key_authenticate(raw="sk-kp-short") is None
    assert api_key_authenticate(raw="") is None
    assert api_key_revoke(key=key) is True and api_key_revoke(key=key) is False
    assert api_key_authenticate(raw=raw) is None


def test_it_records_last_use_at_most_once_a_minute() -> None:
    key, raw = make_api_key()
    first = api_key_authenticate(raw=raw)
    assert first is not None and first.last_used_at is not None
    recent = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)
    api_key_authenticate(raw=raw)
    key.refresh_from_db()
    assert key.last_used_at == recent  # no write within the minute
    old = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=old)
    api_key_authenticate(raw=raw)
    key.refresh_from_db()
    assert key.last_used_at > old


def test_it_checks_the_model_allow_list() -> None:
    open_key, _ = make_api_key()
    narrow, _ = make_api_key(allowed_models=["kimi"])
    assert api_key_model_allowed(key=open_key, model="anything")
    assert api_key_model_allowed(key=narrow, model="kimi")
    assert not api_key_model_allowed(key=narrow, model="kimi-thinking")


def test_it_authenticates_drf_requests_with_the_key_as_request_auth() -> None:
    key, raw = make_api_key(name="svc")
    response = call(f"Bearer {raw}")
    assert response.status_code == 200
    assert response.data == {"key": "svc", "user": "apikey:svc"}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk-kp-wrong", "Bearer a b", "Basic dXNlcjpwYXNz"])
def test_it_answers_401_with_a_bearer_challenge(header: str | None) -> None:
    make_api_key()
    response = call(header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_revoked_key_over_drf() -> None:
    _, raw = make_api_key(revoked=True)
    assert call(f"Bearer {raw}").status_code == 401
