from django.urls import path, re_path

from gateway.api import chat_completions, messages, model_list, openapi, responses, token_check

urlpatterns = [
    path("v1/chat/completions", chat_completions.chat_completions),
    path("v1/messages", messages.messages),
    path("v1/messages/count_tokens", messages.count_tokens),
    re_path(r"^v1/messages/(?P<path>.*)$", messages.messages_not_found),
    path("v1/responses", responses.create_response),
    path("v1/responses/<str:response_id>", responses.stored_response),
    path("v1/models", model_list.ModelListView.as_view()),
    path("v1/models/<path:model_id>", model_list.ModelDetailView.as_view()),
    path("v1/openapi.json", openapi.openapi_schema),
    path("token/check", token_check.token_check),
    re_path(r"^v1/(?P<path>.*)$", chat_completions.api_not_found),
]
