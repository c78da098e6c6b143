"""The fake's mutable state and its token rules (doc 1.4.2, 2.4, 2.5.1).

Nothing here locks: ``FakeKimi`` owns one ``threading.Lock`` and every caller holds it around these calls.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import time
from typing import Any

from gateway.kimi.fake.ids import xid
from gateway.kimi.fake.jwt import identity_claims, jwt_encode, jwt_payload, jwt_signature_ok, token_claims
from gateway.kimi.fake.records import AccountState, Call, ChatRecord, FileRecord
from gateway.kimi.fake.script import Script

CALLS_KEPT = 10_000
DEPLOYMENTS = ("kimi.com", "kimi.ai")  # C.5: served on separate ports (server.py)
_MAX_ACCESS_JTIS = 1_000


@dataclasses.dataclass
class Options:
    parse_delay: float = 0.0
    enforce_msh_headers: bool = False
    refresh_grace: float = 3600.0
    stream_busy_code: str = "failed_precondition"
    max_file_bytes: int = 100 * 1024 * 1024
    research_total: int = 30
    default_reply: str = "Hello from fake Kimi."
    demo: bool = False  # answer in character when nothing is scripted (demo.py; make demo)
    amount_used_ratio: float = 0.0
    # GetSubscriptionStats ratelimitCode5h / ratelimitCode7d objects, e.g. {"ratio": 1, "enabled": True,
    # "resetTime": "<rfc3339>"}; None leaves the key out (free accounts have none).
    ratelimit_5h: dict[str, Any] | None = None
    ratelimit_7d: dict[str, Any] | None = None
    strict_deployments: bool = False
    # deployment ("kimi.com" / "kimi.ai") -> its GetAvailableModels answer; a deployment not named
    # answers the 2026-09 catalogue of doc 2.12 (connect.MODELS)
    catalogues: dict[str, Any] = dataclasses.field(default_factory=dict)


class State:
    def __init__(self) -> None:
        self.options = Options()
        self.accounts: dict[str, AccountState] = {}
        self.by_user: dict[str, AccountState] = {}
        self.chats: dict[str, ChatRecord] = {}
        self.files: dict[str, FileRecord] = {}
        self.blobs: dict[str, FileRecord] = {}  # sha256 -> file, for sign-obj downloads (doc 2.11.4)
        self.sign_secret = secrets.token_bytes(16)
        self.objects: dict[str, tuple[bytes, str]] = {}  # legacy object storage: object_name -> (bytes, type)
        self.calls: collections.deque[Call] = collections.deque(maxlen=CALLS_KEPT)
        self.counts: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self.prompts: collections.deque[tuple[str | None, str]] = collections.deque(maxlen=CALLS_KEPT)
        self.script = Script()
        self.active_chats: set[str] = set()  # chats with a reply streaming right now
        self.chats_created = 0
        self.chats_deleted = 0

    # ---- accounts and tokens

    def mint(
        self, *, name: str, protocol: str, access_ttl: int, refresh_ttl: int, paid: bool, deployment: str
    ) -> AccountState:
        if protocol not in ("connect", "legacy"):
            raise ValueError("protocol must be 'connect' or 'legacy'")
        if deployment not in DEPLOYMENTS:
            raise ValueError(f"deployment must be one of {DEPLOYMENTS}")
        deployment = "kimi.com" if protocol == "legacy" else deployment  # legacy: one host (doc 1.1)
        old = self.accounts.pop(name, None)
        if old is not None:
            self.by_user.pop(old.user_id, None)
        user_id = xid()
        account = AccountState(
            name=name,
            protocol=protocol,
            user_id=user_id,
            paid=paid,
            deployment=deployment,
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
            secret=secrets.token_bytes(32),
            identity=identity_claims(protocol=protocol, user_id=user_id, paid=paid, deployment=deployment),
        )
        self.issue(account)
        self.accounts[name] = account
        self.by_user[user_id] = account
        return account

    def issue(self, account: AccountState) -> None:
        """New access and refresh tokens; the former current refresh token stays valid for the grace period."""
        now = int(time.time())
        access = token_claims(account.identity, typ="access", ttl=account.access_ttl, now=now)
        refresh = token_claims(account.identity, typ="refresh", ttl=account.refresh_ttl, now=now)
        account.access_token = jwt_encode(access, account.secret)
        account.refresh_token = jwt_encode(refresh, account.secret)
        account.access_jtis[access["jti"]] = None
        if len(account.access_jtis) > _MAX_ACCESS_JTIS:  # an ordered set: forget the oldest
            del account.access_jtis[next(iter(account.access_jtis))]
        grace = time.monotonic() + self.options.refresh_grace
        # doc 1.4.2: the previous refresh token evidently stayed valid for a while; keep exactly one.
        previous = {jti: grace for jti, deadline in account.refresh_jtis.items() if deadline is None}
        account.refresh_jtis = {**previous, refresh["jti"]: None}

    def check_token(self, token: str, *, typ: str, deployment: str | None = None) -> tuple[AccountState | None, str]:
        """The account a token belongs to, or None and the reason (for the error message). With
        ``strict_deployments``, a token presented at the other deployment than its issuer is refused."""
        claims = jwt_payload(token)
        account = self.by_user.get(str(claims.get("sub"))) if claims else None
        if claims is None or account is None or not jwt_signature_ok(token, account.secret):
            return None, "token is malformed"
        if self.options.strict_deployments and deployment and deployment != account.deployment:
            return None, f"token was issued by {account.deployment}, not {deployment}"
        if claims.get("typ") != typ:
            return None, "wrong token type"
        if time.time() >= float(claims.get("exp", 0)):
            return None, "token is expired"
        jti = str(claims.get("jti"))
        if typ == "access" and jti not in account.access_jtis:
            return None, "token is revoked"
        if typ == "refresh":
            if jti not in account.refresh_jtis:
                return None, "token is revoked"
            deadline = account.refresh_jtis[jti]
            if deadline is not None and time.monotonic() > deadline:
                return None, "token is revoked"
        return account, ""

    # ---- recording

    def record(self, call: Call) -> None:
        self.calls.append(call)
        self.counts[(call.kind, None)] += 1
        if call.account is not None:
            self.counts[(call.kind, call.account)] += 1

    def stats(self) -> dict[str, Any]:
        by_kind = {kind: n for (kind, account), n in self.counts.items() if account is None}
        return {
            "calls": by_kind,
            "calls_total": sum(by_kind.values()),
            "chats_created": self.chats_created,
            "chats_deleted": self.chats_deleted,
            "active_streams": len(self.active_chats),
        }

    # ---- chats

    def new_chat(self, *, account: str, protocol: str, chat_id: str, name: str) -> ChatRecord:
        chat = ChatRecord(id=chat_id, account=account, protocol=protocol, name=name)
        self.chats[chat_id] = chat
        self.chats_created += 1
        return chat

    def live_chat(self, chat_id: str, account: str) -> ChatRecord | None:
        """A chat of this account that was not deleted (another account's chat does not exist for it)."""
        chat = self.chats.get(chat_id)
        if chat is None or chat.deleted or chat.account != account:
            return None
        return chat

    def delete_chat(self, chat_id: str, account: str) -> bool:
        chat = self.live_chat(chat_id, account)
        if chat is None:
            return False
        chat.deleted = True
        self.chats_deleted += 1
        return True
