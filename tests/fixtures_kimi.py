"""Fake Kimi server fixtures (owned by the fake-server work; see gateway/kimi/fake/README.md).

``fake_kimi_server`` starts one fake per test session on a socket bound to 127.0.0.1:0; ``fake_kimi``
resets it for a test and points the Kimi URL settings at it (kimi.com and kimi.ai at its two ports).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.kimi.fake import FakeKimi, FakeKimiServer


@pytest.fixture(scope="session")
def fake_kimi_server() -> Iterator[FakeKimi]:
    fake = FakeKimi()
    server = FakeKimiServer(fake)
    server.start()
    try:
        yield fake
    finally:
        server.stop()


@pytest.fixture
def fake_kimi(fake_kimi_server: FakeKimi, settings: Any) -> FakeKimi:
    fake_kimi_server.reset()
    settings.KIMI_BASE_URL = settings.KIMI_AUTH_URL = settings.KIMI_LEGACY_BASE_URL = fake_kimi_server.url
    settings.KIMI_AI_BASE_URL = settings.KIMI_AI_AUTH_URL = fake_kimi_server.url_ai  # the second deployment (C.5)
    return fake_kimi_server


# ---- small wire helpers for tests that drive the fake with raw httpx (not with the gateway's clients)

CHAT_PATH = "/apiv2/kimi.gateway.chat.v1.ChatService/Chat"


def connect_envelope(obj: Any, flag: int = 0) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">BI", flag, len(body)) + body


def connect_frames(data: bytes) -> list[tuple[int, Any]]:
    """(flag, JSON) for each envelope; asserts the lengths tile the body exactly."""
    frames, i = [], 0
    while i < len(data):
        flag, length = struct.unpack(">BI", data[i : i + 5])
        assert i + 5 + length <= len(data), "envelope longer than the body"
        frames.append((flag, json.loads(data[i + 5 : i + 5 + length])))
        i += 5 + length
    return frames


def sse_events(text: str) -> list[Any]:
    """The JSON of each ``data:`` event; asserts every event is one data line plus a blank line."""
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        events.append(json.loads(block[6:]))
    return events


def connect_chat_body(text: str, **extra: Any) -> dict[str, Any]:
    """The 2026-09 web-app request shape of doc 2.6.2 (``extra`` overrides top-level fields)."""
    body: dict[str, Any] = {
        "scenario": "SCENARIO_CHAT",
        "tools": [],
        "message": {
            "role": "user",
            "blocks": [{"message_id": "", "text": {"content": text}}],
            "scenario": "SCENARIO_CHAT",
        },
        "options": {
            "thinking": False,
            "enable_plugin": True,
            "reasoning_effort": "REASONING_EFFORT_NONE",
            "model": "k2d6-chat",
        },
        "project_id": "",
    }
    body.update(extra)
    return body


def connect_headers(access_token: str) -> dict[str, str]:
    return {
        "content-type": "application/connect+json",
        "connect-protocol-version": "1",
        "authorization": f"Bearer {access_token}",
    }
