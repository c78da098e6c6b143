"""Recording and replaying the API's exact answers (used by test_recorded_responses.py).

``Api`` sends raw HTTP (httpx, not the SDK, so every byte is seen) to the live gateway, settles the
request's background work, and keeps each exchange. ``Api.transcript()`` renders them as text, with the
volatile values masked; see tests/fixtures/recorded/README.md for the format and the masks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from accounts.models import KimiAccount
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_background_tasks, wait_for_final_log
from tests.integration.api.helpers import pool_account

# The response headers a client relies on, in this order; any other header is not recorded.
RECORDED_HEADERS = (
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "retry-after",
    "allow",
    "www-authenticate",
    "x-conversation-id",
    "x-request-id",
)
# /v1/models changes on purpose in issue 14: only its status and content-type are recorded.
UNRECORDED_BODY_PREFIX = "/v1/models"
UNRECORDED_BODY = "--- body and other headers: not recorded (/v1/models changes on purpose in issue 14)\n"

_UUID = r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
_HEX32 = r"\b[0-9a-f]{32}\b"  # our request ids (uuid4().hex), also inside chatcmpl-<request id>
# The fake's JWTs (random claims; and a token never belongs in a file), masked before the ids.
_TOKEN = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
# Values that differ on every run and are not ids: (pattern, replacement), applied after the ids.
VOLATILE = (
    (re.compile(r'("created":\s*)\d+'), r"\1<created>"),
    (re.compile(r'("checked_in_ms":\s*)\d+'), r"\1<ms>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
)


class Masker:
    """Replaces ids by ``<id1>``, ``<id2>``... in order of first appearance (equal ids stay equal), then
    the other volatile values. Call ``mask`` on the pieces of a transcript in the order they are shown."""

    def __init__(self, known_ids: Iterable[str], extra: Iterable[tuple[re.Pattern[str], str]] = ()) -> None:
        known = sorted({i for i in known_ids if len(i) >= 8}, key=len, reverse=True)
        self._ids = re.compile("|".join([re.escape(i) for i in known] + [_UUID, _HEX32]))
        self._volatile = (*VOLATILE, *extra)
        self._seen: dict[str, str] = {}

    def _placeholder(self, match: re.Match[str]) -> str:
        return self._seen.setdefault(match.group(0), f"<id{len(self._seen) + 1}>")

    def mask(self, text: str) -> str:
        text = self._ids.sub(self._placeholder, _TOKEN.sub("<token>", text))
        for pattern, replacement in self._volatile:
            text = pattern.sub(replacement, text)
        return text


@dataclass
class Exchange:
    method: str
    path: str
    auth: str
    request_body: str | None
    response: httpx.Response


@dataclass
class Api:
    """One case's view of the gateway: a pool, named bearers, and the exchanges sent so far."""

    url: str
    fake: Any
    settings: Any
    bearers: dict[str, str] = field(default_factory=lambda: {"none": ""})
    exchanges: list[Exchange] = field(default_factory=list)
    extra_masks: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def pool(self, *, protocol: str = "connect", accounts: int = 1, **limits: Any) -> None:
        """``accounts`` pool accounts ("first" is picked first) and a gateway key as the bearer "key"."""
        names = ["first", "second"][:accounts]
        for name in names:
            pool_account(self.fake, name, protocol=protocol, **limits)
        # Least recently used wins ties: make the order fixed.
        KimiAccount.objects.filter(name="second").update(last_used_at="2030-01-01T00:00:00Z")
        _, self.bearers["key"] = make_api_key()

    def mask_also(self, pattern: str, replacement: str) -> None:
        """A value this case knows to depend on the clock (e.g. a Retry-After counted from now)."""
        self.extra_masks.append((re.compile(pattern), replacement))

    def chat(self, body: dict[str, Any], *, auth: str = "key") -> httpx.Response:
        return self.send("POST", "/v1/chat/completions", body=body, auth=auth)

    def send(
        self, method: str, path: str, *, body: Any = None, raw: bytes | None = None, auth: str = "key"
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.bearers[auth]}"} if self.bearers[auth] else {}
        content = raw
        if body is not None:
            content = json.dumps(body, ensure_ascii=False).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = httpx.request(method, self.url + path, content=content, headers=headers, timeout=20)
        text = None if content is None else content.decode()
        self.exchanges.append(Exchange(method, path, auth, text, response))
        self._settle(method, path, response)
        return response

    def _settle(self, method: str, path: str, response: httpx.Response) -> None:
        """Let the request's final write and chat delete land, so the next request sees a fixed state."""
        request_id = response.headers.get("x-request-id")
        if method == "POST" and path == "/v1/chat/completions" and request_id:
            wait_for_final_log(request_id)
        wait_for_background_tasks()

    def transcript(self) -> str:
        masker = Masker(self._known_ids(), self.extra_masks)
        parts = [_render(number, exchange, masker) for number, exchange in enumerate(self.exchanges, 1)]
        return "".join(parts) + "=== end\n"

    def _known_ids(self) -> list[str]:
        """Ids the fake minted (chats, messages, files): legacy xids match no general pattern."""
        ids = list(self.fake.files)
        for chat in self.fake.chats.values():
            ids.append(chat.id)
            ids.extend(i for m in chat.messages for i in (m.id, m.parent_id) if i)
        return ids


def _render(number: int, exchange: Exchange, masker: Masker) -> str:
    lines = f"=== request {number}: {exchange.method} {exchange.path} (auth: {exchange.auth})\n"
    if exchange.request_body is not None:
        lines += _body(masker.mask(exchange.request_body))
    response = exchange.response
    lines += f"=== response {number}: {response.status_code}\n"
    unrecorded = exchange.path.startswith(UNRECORDED_BODY_PREFIX)
    for name in ("content-type",) if unrecorded else RECORDED_HEADERS:
        if name in response.headers:
            lines += masker.mask(f"{name}: {response.headers[name]}") + "\n"
    if unrecorded:
        return lines + UNRECORDED_BODY
    return lines + _body(masker.mask(response.content.decode()))


def _body(text: str) -> str:
    """The exact text, then one newline; the length makes invisible differences (a trailing space,
    one newline more) show in the header line too."""
    events = f", {text.count(chr(10) * 2)} events" if text.startswith(("data: ", ": ")) else ""
    return f"--- body: {len(text)} chars{events}\n{text}\n"
