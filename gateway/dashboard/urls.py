"""Dashboard URLs, included by kimiproxy/urls.py at ``/dashboard/`` (namespace ``dashboard``)."""

from __future__ import annotations

from django.urls import path

from gateway.dashboard.views import dashboard_index

app_name = "dashboard"
urlpatterns = [path("", dashboard_index, name="index")]
