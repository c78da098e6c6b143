"""``FakeKimi``: the fake's state plus the control API tests use in-process (README.md lists it all).

The server runs in another thread (tests) or serves other processes (``/_fake/``), so every method takes
the one lock; handlers take it too, briefly, and never across an ``await``.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from gateway.kimi.fake.records import Call, ChatRecord, FakeAccount, FileRecord
from gateway.kimi.fake.script import CITATION_STYLES, Reply, SearchHit, make_fault
from gateway.kimi.fake.state import Options, State


class FakeKimi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = State()
        self.url = ""  # the kimi.com deployment (www, auth and legacy hosts)
        self.url_ai = ""  # the kimi.ai deployment (kimi-web-protocol.md C.5)
        self.deployment_ports: dict[int, str] = {}  # listening port -> deployment, set by the server

    def deployment_of(self, port: int) -> str:
        """The deployment a port serves; an unknown port (an ASGI test client) counts as kimi.com."""
        return self.deployment_ports.get(port, "kimi.com")

    # ---- set-up

    def reset(self) -> None:
        with self.lock:
            self.state = State()

    def configure(self, **options: Any) -> None:
        known = {f.name for f in dataclasses.fields(Options)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown fake options {sorted(unknown)}; known: {sorted(known)}")
        with self.lock:
            for name, value in options.items():
                setattr(self.state.options, name, value)

    def mint_account(
        self,
        name: str,
        protocol: str = "connect",
        access_ttl: int = 900,
        refresh_ttl: int = 7_776_000,
        paid: bool = False,
        deployment: str = "kimi.ai",
    ) -> FakeAccount:
        with self.lock:
            account = self.state.mint(
                name=name,
                protocol=protocol,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
                paid=paid,
                deployment=deployment,
            )
            return account.public()

    def account(self, name: str) -> FakeAccount:
        with self.lock:
            return self.state.accounts[name].public()

    def expire_access(self, name: str) -> None:
        with self.lock:
            self.state.accounts[name].access_jtis.clear()

    def revoke_refresh(self, name: str) -> None:
        with self.lock:
            self.state.accounts[name].refresh_jtis.clear()

    def reply(
        self,
        text: str | None = None,
        *,
        chunks: list[str] | None = None,
        chunk_size: int | None = None,
        thinking: str | None = None,
        search: Any = None,
        citations: str | None = "caret",
        delay: float = 0.0,
        account: str | None = None,
        times: int | None = None,
        length: bool = False,
        searches: Any = None,
    ) -> None:
        if citations is not None and citations not in CITATION_STYLES:
            raise ValueError(f"citations must be one of {CITATION_STYLES} or None")
        hits = None if search is None else tuple(SearchHit.coerce(s) for s in search)
        calls = None if searches is None else tuple(tuple(SearchHit.coerce(s) for s in call) for call in searches)
        reply = Reply(text, chunks, chunk_size, thinking, hits, citations, delay, length, account, times, calls)
        with self.lock:
            self.state.script.replies.append(reply)

    def fault(self, kind: str, **options: Any) -> None:
        fault = make_fault(kind, **options)
        with self.lock:
            self.state.script.faults.append(fault)

    # ---- what happened

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self.state.calls)

    def count(self, kind: str, account: str | None = None) -> int:
        with self.lock:
            return self.state.counts[(kind, account)]

    @property
    def chats(self) -> dict[str, ChatRecord]:
        with self.lock:
            return {chat_id: chat.snapshot() for chat_id, chat in self.state.chats.items()}

    def prompts(self, account: str | None = None) -> list[str]:
        with self.lock:
            return [text for who, text in self.state.prompts if account is None or who == account]

    @property
    def files(self) -> dict[str, FileRecord]:
        with self.lock:
            return {file_id: dataclasses.replace(f) for file_id, f in self.state.files.items()}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return self.state.stats()
