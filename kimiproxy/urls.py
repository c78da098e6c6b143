from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from gateway import health

urlpatterns = [
    path(settings.KIMIPROXY_ADMIN_PATH, admin.site.urls),
    path("ping", health.ping),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("dashboard/", include("gateway.dashboard_urls")),
    path("", include("gateway.urls")),
]

handler404 = "gateway.errorpages.not_found"
handler500 = "gateway.errorpages.server_error"
