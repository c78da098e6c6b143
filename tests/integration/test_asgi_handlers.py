"""The API paths run through the lean handler; the admin keeps Django's full middleware stack."""

from __future__ import annotations

import httpx

from kimiproxy.handlers import is_api_path


def test_api_paths_are_recognised() -> None:
    assert all(is_api_path(p) for p in ("/v1/chat/completions", "/v1/models", "/token/check", "/ping", "/readyz"))
    assert not any(is_api_path(p) for p in ("/admin/", "/dashboard/", "/static/admin/css/base.css"))


def test_the_admin_gets_the_full_stack_and_the_api_the_lean_one(e2e) -> None:
    admin = httpx.get(f"{e2e.url}/admin/login/", timeout=10)
    assert admin.status_code == 200
    assert admin.headers["X-Frame-Options"] == "DENY"  # XFrameOptionsMiddleware
    assert "csrftoken" in admin.cookies  # CSRF middleware set its cookie for the login form

    api = httpx.get(f"{e2e.url}/v1/models", timeout=10)
    assert api.status_code == 401 and api.json()["error"]["type"] == "authentication_error"
    assert "X-Frame-Options" not in api.headers and "set-cookie" not in api.headers
