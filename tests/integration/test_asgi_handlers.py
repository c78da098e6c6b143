"""The API paths run through the lean handler; the admin keeps Django's full middleware stack."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import weakref

import httpx
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.dispatch import Signal
from django.http import HttpResponseBase

from kimiproxy.handlers import is_api_path
from tests.factories import make_api_key

# What kimiproxy/handlers.py copies or relies on, as of Django 5.2.19 (requirements.txt): sha256 of each
# function's source. A change fails the test below; kimiproxy/README.md has the upgrade checklist.
DJANGO_FINGERPRINTS = {
    # copied into ApiASGIHandler.handle, with the request signals and response.close() swapped
    "ASGIHandler.handle": "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323",
    # overridden by ApiASGIHandler.__call__ (no per-request ThreadSensitiveContext)
    "ASGIHandler.__call__": "f756809e9c9308dcccb78a301fccf09196e80cdc4745690f80384d09b69dd102",
    # called on the event loop for async views: resource closers, then request_finished
    "HttpResponseBase.close": "84589f5b23acbb23aa9010f3506ef411b72b1053f2fc2764590e2b3bf3470438",
}


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


class SignalProbe:
    """Records, for each request signal, whether it ran on an event loop and whether the request's
    database connection was still open (receivers run in connection order: Django's
    close_old_connections first, this probe after it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, bool]] = []

    def __enter__(self) -> SignalProbe:
        signals.request_started.connect(self.started)
        signals.request_finished.connect(self.finished)
        return self

    def __exit__(self, *exc: object) -> None:
        signals.request_started.disconnect(self.started)
        signals.request_finished.disconnect(self.finished)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bool, bool]]:
        """The calls once there are ``count`` (the server closes a response after sending it)."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.calls

    def _record(self, name: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.calls.append((name, on_loop, connections["default"].connection is not None))

    def started(self, **kwargs: object) -> None:
        self._record("started")

    def finished(self, **kwargs: object) -> None:
        self._record("finished")


def test_an_async_api_view_gets_its_request_signals_on_the_event_loop(e2e) -> None:
    # /v1/chat/completions is an async view whose database steps run in gateway.db.threads's threads or on
    # gateway.db.eventloop's pool, so its context never holds a Django connection: the receivers run on the
    # loop, without a thread hop.
    with SignalProbe() as probe:
        response = httpx.post(f"{e2e.url}/v1/chat/completions", json={"model": "kimi"}, timeout=10)
        assert response.status_code == 401
        assert probe.wait_for(2) == [("started", True, False), ("finished", True, False)]


def test_a_sync_view_that_used_the_database_closes_its_connection_in_a_thread(e2e) -> None:
    # DRF's /v1/models authenticates the key in asgiref's sync thread; only that thread sees the
    # connection, so request_finished must run there, and the connection is closed by then.
    _, raw = make_api_key()
    with SignalProbe() as probe:
        for _ in range(3):
            response = httpx.get(f"{e2e.url}/v1/models", headers={"authorization": f"Bearer {raw}"}, timeout=10)
            assert response.status_code == 200
        assert probe.wait_for(6) == [("started", True, False), ("finished", False, False)] * 3


def test_the_handler_copy_matches_the_django_version_it_was_made_from() -> None:
    # ApiASGIHandler.handle is Django's ASGIHandler.handle with the signal/close calls swapped; when
    # Django changes what it copies or relies on, follow kimiproxy/README.md and update the fingerprints.
    functions = {f.__qualname__: f for f in (ASGIHandler.handle, ASGIHandler.__call__, HttpResponseBase.close)}
    fingerprints = {name: hashlib.sha256(inspect.getsource(f).encode()).hexdigest() for name, f in functions.items()}
    changed = sorted(name for name, digest in fingerprints.items() if DJANGO_FINGERPRINTS[name] != digest)
    assert not changed, f"Django changed {changed}: review kimiproxy/handlers.py (kimiproxy/README.md)"


def receivers_of(signal: Signal) -> set[str]:
    # Signal.receivers holds (lookup key, receiver or weak reference, is_async) in Django 5.2.
    found = [entry[1]() if isinstance(entry[1], weakref.ReferenceType) else entry[1] for entry in signal.receivers]
    return {f"{r.__module__}.{r.__qualname__}" for r in found if r is not None}


def test_the_request_signals_have_only_the_receivers_the_handler_may_run_on_the_loop() -> None:
    # ApiASGIHandler runs these receivers on the event loop for async views: each must be quick and never
    # block. A new receiver (an app, a dependency, another cache backend's close) needs a review first.
    assert receivers_of(signals.request_started) == {"django.db.reset_queries", "django.db.close_old_connections"}
    assert receivers_of(signals.request_finished) == {
        "django.db.close_old_connections",
        "django.core.cache.close_caches",  # calls close() of the caches in use: a no-op for locmem and Redis
        "django.core.handlers.base.reset_urlconf",
    }
