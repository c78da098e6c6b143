from django.urls import path, re_path

from gateway import views, views_misc

urlpatterns = [
    path("v1/chat/completions", views.chat_completions),
    path("v1/models", views_misc.ModelListView.as_view()),
    path("v1/models/<path:model_id>", views_misc.ModelDetailView.as_view()),
    path("v1/openapi.json", views_misc.openapi_schema),
    path("token/check", views_misc.token_check),
    re_path(r"^v1/(?P<path>.*)$", views.api_not_found),
]
