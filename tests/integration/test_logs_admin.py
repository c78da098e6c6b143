"""Request-log and conversation admin pages through the test client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.test import Client

from gateway.choices import ConversationState, Outcome
from gateway.models import Conversation, RequestLog
from tests.factories import make_account, make_api_key

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.browser.urlconf"),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),  # whitenoise: no collectstatic in tests
]
LOGS = "/admin/gateway/requestlog/"
CONVERSATIONS = "/admin/gateway/conversation/"


@pytest.fixture
def logs() -> list[RequestLog]:
    account = make_account(name="alpha")
    key, _ = make_api_key(name="bot")
    now = datetime.now(UTC)
    return [
        RequestLog.objects.create(
            request_id="req-ok", created_at=now, outcome=Outcome.OK, status_code=200, model="kimi-k2",
            account=account, api_key=key, upstream_chat_id="chat-aaa", stream=True, passthrough_hash="f" * 64,
        ),
        RequestLog.objects.create(
            request_id="req-bad", created_at=now - timedelta(hours=1), outcome=Outcome.UPSTREAM_ERROR,
            status_code=502, error_code="upstream_timeout", model="kimi-search", upstream_chat_id="chat-bbb",
        ),
    ]  # fmt: skip


def test_it_lists_logs_with_filters_and_date_hierarchy(admin_client: Client, logs: list[RequestLog]) -> None:
    response = admin_client.get(LOGS)
    assert response.status_code == 200
    body = response.content.decode()
    assert "req-ok" in body and "req-bad" in body
    assert 'class="toplinks"' in body  # the date hierarchy
    filters = {spec.title for spec in response.context["cl"].filter_specs}
    assert {"status code", "error code", "model", "account", "api key", "stream"} <= filters
    assert 'kp-badge kp-badge-upstream_error">Upstream error<' in body


def test_it_filters_by_error_code_and_searches_by_upstream_chat_id(
    admin_client: Client, logs: list[RequestLog]
) -> None:
    filtered = admin_client.get(LOGS, {"error_code": "upstream_timeout"})
    assert [row.request_id for row in filtered.context["cl"].result_list] == ["req-bad"]
    found = admin_client.get(LOGS, {"q": "chat-aaa"})
    assert [row.request_id for row in found.context["cl"].result_list] == ["req-ok"]


def test_it_shows_a_read_only_detail_page_without_the_passthrough_hash(
    admin_client: Client, logs: list[RequestLog]
) -> None:
    response = admin_client.get(f"{LOGS}{logs[0].pk}/change/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "chat-aaa" in body and "req-ok" in body
    assert 'name="_save"' not in body and "f" * 64 not in body
    assert admin_client.get(f"{LOGS}add/").status_code == 403
    assert admin_client.post(f"{LOGS}{logs[0].pk}/delete/").status_code == 403


def _conversation(state: str, *, hours_idle: float = 1.0, chat_id: str = "") -> Conversation:
    now = datetime.now(UTC)
    return Conversation.objects.create(
        account=make_account(), chat_id=chat_id, state=state, kept=state == ConversationState.KEPT,
        created_at=now - timedelta(hours=hours_idle), last_used_at=now - timedelta(hours=hours_idle),
    )  # fmt: skip


def test_it_lists_leftover_conversations_with_account_age_and_state(admin_client: Client) -> None:
    failed = _conversation(ConversationState.DELETE_FAILED, chat_id="chat-failed")
    expired = _conversation(ConversationState.KEPT, hours_idle=30, chat_id="chat-expired")
    _conversation(ConversationState.KEPT, hours_idle=1, chat_id="chat-kept-fresh")
    response = admin_client.get(CONVERSATIONS, {"cleanup": "leftover"})
    assert {c.pk for c in response.context["cl"].result_list} == {failed.pk, expired.pk}
    body = response.content.decode()
    assert failed.account.name in body and "1\xa0day" in body
    assert 'kp-badge kp-badge-delete_failed">Delete failed (will retry)<' in body


def test_it_deletes_selected_conversations_upstream_through_the_service(admin_client: Client) -> None:
    first = _conversation(ConversationState.DELETE_FAILED, chat_id="chat-1")
    second = _conversation(ConversationState.PENDING_DELETE, chat_id="chat-2")
    with mock.patch(
        "gateway.records.conversations.conversations_delete_now", autospec=True, return_value=(1, 1)
    ) as delete:
        response = admin_client.post(
            CONVERSATIONS,
            {"action": "delete_upstream_now", "_selected_action": [first.pk, second.pk]},
            follow=True,
        )
    assert sorted(delete.call_args.kwargs["conversation_ids"]) == sorted([first.pk, second.pk])
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Deleted 1 upstream; 1 failed and stay for cleanup_conversations to retry."]


def test_it_links_the_dashboard_from_the_admin_index(admin_client: Client) -> None:
    body = admin_client.get("/admin/").content.decode()
    assert 'href="/dashboard/"' in body and "Open the usage dashboard" in body


def test_it_shows_which_kept_chats_native_multi_turn_keeps(admin_client: Client) -> None:
    native = _conversation(ConversationState.KEPT, chat_id="chat-native")
    Conversation.objects.filter(pk=native.pk).update(native_fingerprint="f" * 64)
    _conversation(ConversationState.KEPT, chat_id="chat-explicit")
    page = admin_client.get(CONVERSATIONS, {"kept_by": "native"}).content.decode()
    assert "chat-native" in page and "chat-explicit" not in page
    page = admin_client.get(CONVERSATIONS, {"kept_by": "explicit"}).content.decode()
    assert "chat-explicit" in page and "chat-native" not in page
    assert "f" * 64 not in admin_client.get(f"{CONVERSATIONS}{native.pk}/change/").content.decode()
