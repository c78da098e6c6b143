"""The project's URLs plus the dashboard, for tests run before kimiproxy/urls.py includes it."""

from __future__ import annotations

from django.urls import include, path

from kimiproxy.urls import handler404, handler500
from kimiproxy.urls import urlpatterns as project_urlpatterns

_included = any(getattr(p, "namespace", None) == "dashboard" for p in project_urlpatterns)
urlpatterns = list(project_urlpatterns)
if not _included:
    urlpatterns.append(path("dashboard/", include("gateway.dashboard.urls")))

__all__ = ["handler404", "handler500", "urlpatterns"]
