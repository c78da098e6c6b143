"""What both protocols' handlers share: call records, authentication, error bodies."""

from __future__ import annotations

from typing import Any

from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.errors import connect_error
from gateway.kimi.fake.http import Request
from gateway.kimi.fake.records import AccountState, Call
from gateway.kimi.fake.script import Fault

HEADER_KEYS = (
    "content-type",
    "connect-protocol-version",
    "x-msh-device-id",
    "x-msh-session-id",
    "x-traffic-id",
    "x-msh-platform",
    "x-msh-version",
    "x-language",
    "r-timezone",
    "referer",
    "origin",
    "user-agent",
)
BAD_GATEWAY_HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
# What a web application firewall answers instead of the API (C.11: says nothing about the token).
FORBIDDEN_HTML = b"<html><head><title>403 Forbidden</title></head><body><h1>Access denied</h1></body></html>"
TOKEN_KEYS = ("refresh_token", "refreshToken", "access_token", "accessToken")

# Connect code -> HTTP status for unary errors (doc 2.13.1).
CONNECT_STATUS = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "out_of_range": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "already_exists": 409,
    "aborted": 409,
    "resource_exhausted": 429,
    "canceled": 499,
    "unknown": 500,
    "internal": 500,
    "unimplemented": 501,
    "unavailable": 503,
    "deadline_exceeded": 504,
}


def new_call(fake: FakeKimi, req: Request, protocol: str, kind: str) -> Call:
    """Record the call on arrival (exact counters); handlers fill in account and body as they learn them."""
    headers = {k: req.headers[k] for k in HEADER_KEYS if k in req.headers}
    if "authorization" in req.headers:
        headers["authorization"] = "Bearer ***"
    deployment = fake.deployment_of(req.port)
    call = Call(protocol=protocol, kind=kind, account=None, path=req.path, body=None, headers=headers)
    call.deployment = deployment
    with fake.lock:
        fake.state.record(call)
    return call


def attach(fake: FakeKimi, call: Call, account: AccountState) -> None:
    with fake.lock:
        call.account = account.name
        fake.state.counts[(call.kind, account.name)] += 1


def scrub(body: Any) -> Any:
    """The body as recorded: token fields removed."""
    if isinstance(body, dict) and any(k in body for k in TOKEN_KEYS):
        return {k: v for k, v in body.items() if k not in TOKEN_KEYS}
    return body


def field(obj: Any, snake: str, default: Any = None) -> Any:
    """Protobuf-JSON accepts both spellings of a request field (doc 2.2.2)."""
    if not isinstance(obj, dict):
        return default
    if snake in obj:
        return obj[snake]
    head, *rest = snake.split("_")
    camel = head + "".join(part.title() for part in rest)
    return obj.get(camel, default)


async def connect_unary_error(req: Request, call: Call, code: str, message: str, reason: str | None = None) -> None:
    call.status = CONNECT_STATUS.get(code, 500)
    await req.respond_json(call.status, connect_error(code, message, reason))


async def legacy_error(
    req: Request, call: Call, status: int, error_type: str, message: str, detail: Any = None
) -> None:
    call.status = status
    await req.respond_json(status, {"error_type": error_type, "message": message, "detail": detail})


def _msh_headers_match(req: Request, account: AccountState) -> bool:
    """doc 2.3: the x-msh-* trio equals the JWT claims (only enforced when configured)."""
    identity = account.identity
    wanted = {
        "x-msh-device-id": identity.get("device_id"),
        "x-msh-session-id": identity.get("ssid"),
        "x-traffic-id": identity.get("sub"),
    }
    return all(req.headers.get(k) == v for k, v in wanted.items())


async def authenticate(fake: FakeKimi, req: Request, call: Call, *, protocol: str) -> AccountState | None:
    """The account of the Bearer access token, or None after answering 401 in the protocol's shape."""
    token = req.bearer()
    with fake.lock:
        if token:
            account, why = fake.state.check_token(token, typ="access", deployment=call.deployment)
        else:
            account, why = None, "token is missing"
        enforce = fake.state.options.enforce_msh_headers
    if account is not None and protocol == "connect" and enforce and not _msh_headers_match(req, account):
        account, why = None, "x-msh headers do not match the token"
    if account is not None:
        attach(fake, call, account)
        return account
    await auth_refused(req, call, protocol=protocol, why=why)
    return None


async def auth_refused(req: Request, call: Call, *, protocol: str, why: str) -> None:
    if protocol == "connect":  # doc 2.13.1 / 2.15.5
        await connect_unary_error(
            req, call, "unauthenticated", f"invalid user token: {why}", "REASON_INVALID_AUTH_TOKEN"
        )
    else:  # doc 1.4.2 / 1.5
        await legacy_error(req, call, 401, "auth.token.invalid", "您的授权已过期，请重新登录", why)


def retry_headers(fault: Fault) -> list[tuple[str, str]]:
    return [("retry-after", str(int(fault.retry_after)))] if fault.retry_after is not None else []


async def respond_http_fault(req: Request, call: Call, fault: Fault) -> bool:
    """``http_5xx`` / ``http_429`` / ``forbidden_html``: the same plain HTTP answer on every call kind
    and protocol; True when ``fault`` was one of them and has been answered."""
    if fault.kind == "forbidden_html":
        call.status = 403
        await req.respond(403, FORBIDDEN_HTML, "text/html")
    elif fault.kind == "http_5xx":
        call.status = fault.status or 502
        body, ctype = (b"", None) if fault.variant == "empty" else (BAD_GATEWAY_HTML, "text/html")
        await req.respond(call.status, body, ctype, retry_headers(fault))
    elif fault.kind == "http_429":
        call.status = 429
        await req.respond(429, b"", None, retry_headers(fault))
    else:
        return False
    return True
