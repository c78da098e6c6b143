"""What the Messages door reads from a request, checked at the prompt and the uploads the fake Kimi
received: system blocks (Claude Code's billing header dropped), a system message, images and PDFs
(base64 and URL, through the SSRF guard), text documents, earlier thinking dropped, and blocks of a
type the door does not know kept as text."""

from __future__ import annotations

import base64

import anthropic
import pytest

from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account
from tests.integration.api.test_features import PNG, file_server  # noqa: F401 (a fixture)

MODEL = "claude-haiku-4-5"


@pytest.fixture
def client(e2e):
    pool_account(e2e.fake, "first")
    _, raw = make_api_key()
    return anthropic.Anthropic(base_url=e2e.url, api_key=raw, max_retries=0, timeout=20)


def test_system_blocks_and_system_messages_are_instructions(e2e, client):
    e2e.fake.reply(text="ok")
    client.messages.create(
        model=MODEL,
        max_tokens=100,
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332; cc_entrypoint=cli"},
            {"type": "text", "text": "You are a CLI helper.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in English."},
        ],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "First question", "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "old reasoning", "signature": "anything"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "First answer"},
                ],
            },
            {"role": "user", "content": "Second question"},
        ],
        metadata={"user_id": "user_abc_account__session_123"},
        extra_body={"temperature": 0.2, "top_k": 5, "context_management": {"edits": []}},
    )
    (prompt,) = e2e.fake.prompts()
    assert "billing-header" not in prompt and "cc_version" not in prompt
    assert "You are a CLI helper." in prompt and "Answer in English." in prompt
    assert "First answer" in prompt and "old reasoning" not in prompt and "opaque" not in prompt
    assert prompt.index("First question") < prompt.index("Second question")


def test_a_base64_image_and_pdf_are_uploaded(e2e, client):
    e2e.fake.reply(text="a picture and a document")
    pdf = b"%PDF-1.4 otters"
    client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
                    },
                    {
                        "type": "document",
                        "title": "otters.pdf",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": base64.b64encode(pdf).decode(),
                        },
                    },
                    {
                        "type": "document",
                        "title": "notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "inline notes"},
                    },
                    {"type": "text", "text": "What are these?"},
                ],
            }
        ],
    )
    uploaded = {f.data for f in e2e.fake.files.values()}
    assert {PNG, pdf} <= uploaded
    (prompt,) = e2e.fake.prompts()
    assert "inline notes" in prompt and "What are these?" in prompt


def test_a_url_image_goes_through_the_ssrf_guard(e2e, client, file_server):  # noqa: F811
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "url", "url": f"{file_server}/otters.pdf"}},
                        {"type": "text", "text": "summarise"},
                    ],
                }
            ],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "refused" in caught.value.body["error"]["message"]
    assert e2e.fake.count("chat") + e2e.fake.count("stream") == 0


def test_a_url_document_is_fetched_when_allowed(e2e, client, file_server, settings):  # noqa: F811
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    e2e.fake.reply(text="otters")
    client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "url", "url": f"{file_server}/otters.pdf"}},
                    {"type": "text", "text": "summarise"},
                ],
            }
        ],
    )
    assert b"%PDF-1.4 a tiny document about otters" in {f.data for f in e2e.fake.files.values()}


def test_blocks_of_an_unknown_type_are_kept_as_text_and_never_refused(e2e, client):
    e2e.fake.reply(text="fine")
    client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "search_result", "source": "https://example.org", "title": "t", "text": "a found passage"},
                    {"type": "container_upload", "file_id": "f_1"},
                    {"type": "text", "text": "and the question"},
                ],
            }
        ],
    )
    (prompt,) = e2e.fake.prompts()
    assert "a found passage" in prompt and "[container_upload block]" in prompt
