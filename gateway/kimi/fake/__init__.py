"""The fake Kimi upstream (both protocols) for tests, benchmarks and the demo; see README.md."""

from __future__ import annotations

from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.records import Call, ChatRecord, FakeAccount, FileRecord, MessageRecord
from gateway.kimi.fake.server import FakeKimiServer

__all__ = ["Call", "ChatRecord", "FakeAccount", "FakeKimi", "FakeKimiServer", "FileRecord", "MessageRecord"]
