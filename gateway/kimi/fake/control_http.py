"""``/_fake/...``: the control API over HTTP, so a fake in another process can be driven (README.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.http import Request


def _account_json(fake: FakeKimi, name: str) -> dict[str, Any]:
    account = fake.account(name)
    return {
        "name": account.name,
        "protocol": account.protocol,
        "user_id": account.user_id,
        "refresh_token": account.refresh_token,
        "access_token": account.access_token,
        "paid": account.paid,
        "deployment": account.deployment,
    }


def _chat_json(chat: Any) -> dict[str, Any]:
    data = dataclasses.asdict(chat)
    data.pop("open_segment", None)
    return data


async def handle_control(fake: FakeKimi, req: Request) -> None:
    action = req.path.removeprefix("/_fake/").strip("/")
    body = req.json() if req.method == "POST" else {}
    if not isinstance(body, dict):
        await req.respond_json(400, {"error": "body must be a JSON object"})
        return
    try:
        answer = _dispatch(fake, req, action, body)
    except (TypeError, ValueError, KeyError) as exc:
        await req.respond_json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return
    if answer is None:
        await req.respond_json(404, {"error": f"unknown control call {req.method} /_fake/{action}"})
        return
    await req.respond_json(200, answer)


def _dispatch(fake: FakeKimi, req: Request, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
    post = req.method == "POST"
    if post and action == "reset":
        fake.reset()
        return {}
    if post and action == "config":
        fake.configure(**body)
        return {}
    if post and action == "accounts":
        fake.mint_account(**body)
        return _account_json(fake, body["name"])
    if not post and action.startswith("accounts/"):
        return _account_json(fake, action.removeprefix("accounts/"))
    if post and action == "reply":
        fake.reply(**body)
        return {}
    if post and action == "fault":
        fake.fault(body.pop("kind"), **body)
        return {}
    if not post and action == "calls":
        return {"calls": _calls(fake, req.query)}
    if not post and action == "stats":
        return fake.stats()
    if not post and action == "chats":
        return {"chats": [_chat_json(chat) for chat in fake.chats.values()]}
    if not post and action == "prompts":
        return {"prompts": fake.prompts(req.query.get("account"))}
    return None


def _calls(fake: FakeKimi, query: dict[str, str]) -> list[dict[str, Any]]:
    calls = fake.calls
    if "kind" in query:
        calls = [c for c in calls if c.kind == query["kind"]]
    if "account" in query:
        calls = [c for c in calls if c.account == query["account"]]
    limit = int(query.get("limit") or 0)
    if limit:
        calls = calls[-limit:]
    return [c.as_json() for c in calls]
