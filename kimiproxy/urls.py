from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from gateway.api import health

urlpatterns = [
    path(settings.KIMIPROXY_ADMIN_PATH, admin.site.urls),
    path("ping", health.ping),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("dashboard/", include("gateway.dashboard.urls")),
    path("", include("gateway.api.urls")),
]

handler404 = "gateway.api.errors.not_found"
handler500 = "gateway.api.errors.server_error"
