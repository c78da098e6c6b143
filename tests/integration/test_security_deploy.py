"""Production settings: ``check --deploy`` is clean, the admin path moves, CORS is opt-in by origin.

Settings are read once from the environment, so the first two run ``manage.py`` in a subprocess with an
explicit environment (nothing inherited but PATH/HOME), exactly as a deployment would.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import Client

from tests.integration.gateway_processes import ROOT

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "Zq8#vN2$pL5^wR9&tY3*uI6(oP1)aS4_dF7+gH0=jK-lX;cV,bM.nQ/eW?rT!yU~",
    "KIMIPROXY_TOKEN_KEY": "dGVzdC10b2tlbi1rZXktMzItYnl0ZXMtbG9uZy0wMTI=",
    "ALLOWED_HOSTS": "gateway.example.com",
    "KIMIPROXY_HSTS_SECONDS": "31536000",
    "KIMIPROXY_SSL_REDIRECT": "true",
    "KIMIPROXY_BEHIND_PROXY": "true",
    "KIMIPROXY_HSTS_PRELOAD": "true",  # else security.W021; an operator choice, as HSTS itself is
}


def manage(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "kimiproxy.settings",
        "KIMIPROXY_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        **env,
    }
    return subprocess.run(  # noqa: S603  (our interpreter, our arguments)
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_it_passes_check_deploy_with_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_fails_check_deploy_without_hsts(tmp_path):
    """The same check notices a missing setting, so the test above can fail."""
    insecure = {**PRODUCTION, "KIMIPROXY_HSTS_SECONDS": "0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **insecure)
    assert result.returncode != 0 and "security.W004" in result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    production = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage("check", tmp_path=tmp_path, **production)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_it_refuses_to_start_with_a_time_zone_that_is_not_an_iana_name(tmp_path):
    result = manage("check", tmp_path=tmp_path, **PRODUCTION, KIMIPROXY_TIMEZONE="Mars/Olympus")
    assert result.returncode != 0 and "KIMIPROXY_TIMEZONE must be an IANA time zone name" in result.stderr


def test_it_serves_the_admin_at_the_configured_path(tmp_path):
    script = (
        "from django.test import Client; c = Client(); "
        "print('RESULT', c.get('/admin/').status_code, c.get('/ops-7f3a/console/').status_code, "
        "c.get('/ops-7f3a/console/')['Location'])"
    )
    env = {**PRODUCTION, "KIMIPROXY_SSL_REDIRECT": "false", "ALLOWED_HOSTS": "testserver"}
    result = manage("shell", "-c", script, tmp_path=tmp_path, KIMIPROXY_ADMIN_PATH="/ops-7f3a/console/", **env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    old, new, location = line.split()[1:]
    assert (old, new) == ("404", "302")
    assert location.startswith("/ops-7f3a/console/login/")


PREFLIGHT = {
    "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
    "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization, content-type",
}


@pytest.fixture
def cors(settings):  # type: ignore[no-untyped-def]
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    return Client()


def test_it_answers_a_preflight_from_an_allowed_origin(cors):
    response = cors.options("/v1/chat/completions", HTTP_ORIGIN="https://app.example.com", **PREFLIGHT)
    assert response["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in response["access-control-allow-headers"]
    assert "POST" in response["access-control-allow-methods"]


def test_it_gives_no_cors_headers_to_another_origin(cors):
    response = cors.options("/v1/chat/completions", HTTP_ORIGIN="https://evil.example.net", **PREFLIGHT)
    assert not response.has_header("access-control-allow-origin")


def test_it_gives_no_cors_headers_by_default(settings):
    settings.CORS_ALLOWED_ORIGINS = []
    response = Client().options("/v1/chat/completions", HTTP_ORIGIN="https://app.example.com", **PREFLIGHT)
    assert not response.has_header("access-control-allow-origin")


def test_it_keeps_cors_off_the_admin_even_for_an_allowed_origin(cors):
    response = cors.options("/admin/", HTTP_ORIGIN="https://app.example.com", **PREFLIGHT)
    assert not response.has_header("access-control-allow-origin")
