"""Legacy file upload (protocol doc 1.14): pre-sign, PUT, register (re-posted until the upstream has the
object, C.12), wait for parse_process."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from django.conf import settings

from gateway.kimi.base import BadRequest, FileBlob, FileRef, FileRejected, KimiError, ProtocolError
from gateway.kimi.connect.files import UPLOAD_SECONDS
from gateway.kimi.framing import SSEDecoder
from gateway.kimi.stream import send
from gateway.kimi.transport.http import UpstreamHTTP, UpstreamResponse, request_timeout

if TYPE_CHECKING:
    from gateway.kimi.legacy.session import LegacySession

REGISTER_SECONDS = 30.0  # how long kimi-free-api re-posts /api/file (C.12)
_REGISTERED = ("initialized", "parsed", "failed")


async def legacy_upload(session: LegacySession, blob: FileBlob) -> FileRef:
    """Upload ``blob`` and wait until it is parsed; FileRejected on refusal, failure or timeout."""
    try:
        presigned = await session.call("POST", "/api/pre-sign-url", json={"action": blob.kind, "name": blob.name})
        await _put(session.http, presigned, blob)
        registered = await _register(session, _register_body(presigned, blob), name=blob.name)
    except BadRequest as exc:
        raise FileRejected(f"upstream refused {blob.name!r}: {exc.message}", status=exc.status) from None
    file_id = registered.get("id")
    if not isinstance(file_id, str) or not file_id:
        raise ProtocolError("file registration answer has no id")
    status = registered.get("status")
    if status == "failed":
        raise FileRejected(f"upstream could not parse {blob.name!r}")
    if status != "parsed":  # images are usually parsed at once (doc 1.19.3)
        await _wait_parsed(session, file_id=file_id, name=blob.name)
    size = registered.get("size")
    return FileRef(
        file_id=file_id, name=blob.name, kind=blob.kind, size=size if isinstance(size, int) else len(blob.data)
    )


async def _register(session: LegacySession, body: dict[str, Any], *, name: str) -> dict[str, Any]:
    """``POST /api/file``, repeated until its status is ``initialized`` or later (kimi-web-protocol.md
    C.12: right after the PUT the object may not be registered yet), for at most ``REGISTER_SECONDS``
    (and never longer than the parse timeout)."""
    loop = asyncio.get_running_loop()
    limit = min(REGISTER_SECONDS, settings.KIMIPROXY_PARSE_TIMEOUT)
    deadline = loop.time() + limit
    pause = 0.1
    while True:
        registered = await session.call("POST", "/api/file", json=body)
        if registered.get("status") in _REGISTERED:
            return registered
        if loop.time() + pause > deadline:
            raise FileRejected(f"upstream did not register {name!r} within {limit:g} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _put(http: UpstreamHTTP, presigned: dict[str, Any], blob: FileBlob) -> None:
    url = presigned.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ProtocolError("pre-sign answer has no upload URL")
    # The pre-signed URL is used exactly as returned; the storage host needs no Kimi headers (doc 1.14.1).
    request = http.build_request(
        "PUT",
        url,
        content=blob.data,
        headers={"content-type": blob.mime_type, "user-agent": settings.KIMIPROXY_USER_AGENT},
        timeout=request_timeout(),
    )
    response = await send(http, request, stream=False, budget=UPLOAD_SECONDS)
    if response.status_code == 413 or 400 <= response.status_code < 500:
        raise FileRejected(f"storage refused {blob.name!r} (HTTP {response.status_code})", status=response.status_code)
    if not 200 <= response.status_code < 300:
        raise KimiError(f"storage answered HTTP {response.status_code}", status=response.status_code)


def _register_body(presigned: dict[str, Any], blob: FileBlob) -> dict[str, Any]:
    if blob.kind == "image":
        return {"type": "image", "file_id": presigned.get("file_id", ""), "name": blob.name}
    # chat_id is empty: files are uploaded before the turn's chat exists.
    body = {"type": "file", "name": blob.name, "object_name": presigned.get("object_name", "")}
    return body | {"file_id": "", "chat_id": ""}


async def _wait_parsed(session: LegacySession, *, file_id: str, name: str) -> None:
    """``POST /api/file/parse_process`` streams ``resp`` events until the file is parsed or failed."""
    limit = settings.KIMIPROXY_PARSE_TIMEOUT
    token = await session.tokens.access_token()
    try:
        async with asyncio.timeout(limit):
            response = await session.request(
                "POST",
                "/api/file/parse_process",
                token=token,
                json={"ids": [file_id]},
                stream=True,
                timeout=request_timeout(read=limit),
            )
            try:
                if response.status_code != 200:
                    await response.aread()
                    from gateway.kimi.legacy.session import error_from_response

                    raise error_from_response(response)
                status = await _final_status(response, file_id)
            finally:
                await response.aclose()
    except TimeoutError:
        raise FileRejected(f"upstream did not finish parsing {name!r} within {limit:g} s") from None
    if status != "parsed":
        raise FileRejected(f"upstream could not parse {name!r}")


async def _final_status(response: UpstreamResponse, file_id: str) -> str:
    decoder = SSEDecoder()
    status = ""
    async for chunk in response.aiter_bytes():
        for event in decoder.decode(chunk):
            status = _status(event.data, file_id) or status
            if status in ("parsed", "failed"):
                return status
    for event in decoder.flush():
        status = _status(event.data, file_id) or status
    return status


def _status(data: str, file_id: str) -> str:
    try:
        payload = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(payload, dict) or payload.get("id", file_id) != file_id:
        return ""
    status = payload.get("status")
    return status if isinstance(status, str) else ""
