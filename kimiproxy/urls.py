from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from gateway.api import health, probes

urlpatterns = [
    path(settings.KIMIPROXY_ADMIN_PATH, admin.site.urls),
    path("ping", health.ping),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("api/hello", probes.connectivity_check),  # Claude Code's connectivity check (HEAD)
    path("dashboard/", include("gateway.dashboard.urls")),
    path("", include("gateway.api.urls")),
    path("", probes.connectivity_check),  # HEAD /: a client's connectivity check
]

handler404 = "gateway.api.errors.not_found"
handler500 = "gateway.api.errors.server_error"
