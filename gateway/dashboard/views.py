"""The staff dashboard page: parse the range, build the report, render it inside the admin's frame."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from gateway.dashboard.ranges import RANGES, range_spec
from gateway.dashboard.report import dashboard_report


@staff_member_required
def dashboard_index(request: HttpRequest) -> HttpResponse:
    spec = range_spec(request.GET.get("range"))
    report = dashboard_report(spec=spec, now=timezone.now())
    context = {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the charts want the full width
        "title": "Usage dashboard",
        "report": report,
        "ranges": list(RANGES.values()),
    }
    return render(request, "dashboard/index.html", context)
