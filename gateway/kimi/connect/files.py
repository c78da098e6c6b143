"""Connect file upload (protocol doc 2.11): multipart upload, then poll GetFileParseProgress."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from django.conf import settings

from gateway.kimi.base import BadRequest, FileBlob, FileRef, FileRejected, ProtocolError
from gateway.kimi.stream import send
from gateway.kimi.transport.http import UpstreamResponse, identity_headers, request_timeout

if TYPE_CHECKING:
    from gateway.kimi.connect.session import ConnectSession

UPLOAD_PATH = "/apiv2-files/file/upload"
# Sending up to KIMIPROXY_FILE_MAX_BYTES takes longer than a first byte; stalls are still caught by
# httpx's per-read/per-write timeouts. TODO(settings): KIMIPROXY_UPLOAD_TIMEOUT if operators need it.
UPLOAD_SECONDS = 300.0
PROGRESS_PATH = "/apiv2-files/kimi.gateway.file.v1.FileService/GetFileParseProgress"
_SUCCESS = ("PROCESS_STATUS_SUCCESS", 3)
_FAILED = ("PROCESS_STATUS_FAILED", 4)  # numbers: one client's enum (doc 2.2.2, UNCERTAIN)


async def connect_upload(session: ConnectSession, blob: FileBlob) -> FileRef:
    """Upload ``blob`` and wait until the upstream parsed it; FileRejected on refusal or timeout."""
    file_id = await _post_file(session, blob)
    await _wait_parsed(session, file_id=file_id, name=blob.name)
    return FileRef(file_id=file_id, name=blob.name, kind=blob.kind, size=len(blob.data))


async def _post_file(session: ConnectSession, blob: FileBlob) -> str:
    token = await session.tokens.access_token()
    response = await _send_upload(session, blob, token)
    if response.status_code == 401:
        token = await session.tokens.access_token(rejected=token)
        response = await _send_upload(session, blob, token)
    if response.status_code != 200:
        from gateway.kimi.connect.session import error_from_response

        error = error_from_response(response)
        if isinstance(error, BadRequest) or response.status_code == 413:
            raise FileRejected(f"upstream refused {blob.name!r}: {error.message}", status=response.status_code)
        raise error
    try:
        body: Any = response.json()
        file_id = body["file"]["id"]
    except (ValueError, KeyError, TypeError):
        raise ProtocolError("upload answer has no file id") from None
    if not isinstance(file_id, str) or not file_id:
        raise ProtocolError("upload answer has no file id")
    return file_id


async def _send_upload(session: ConnectSession, blob: FileBlob, token: str) -> UpstreamResponse:
    headers = identity_headers(token) | {"accept": "application/json, text/plain, */*"}
    request = session.http.build_request(
        "POST",
        session.base_url + UPLOAD_PATH,
        files={"file": (blob.name, blob.data, blob.mime_type)},  # field name "file" (doc 2.11.1)
        headers=headers,
        timeout=request_timeout(),
    )
    return await send(session.http, request, stream=False, budget=UPLOAD_SECONDS)


async def _wait_parsed(session: ConnectSession, *, file_id: str, name: str) -> None:
    """Poll about once a second (doc 2.11.2), faster at first: images parse in about a second."""
    loop = asyncio.get_running_loop()
    limit = settings.KIMIPROXY_PARSE_TIMEOUT
    deadline = loop.time() + limit
    pause = 0.1
    while True:
        answer = await session.unary(session.base_url + PROGRESS_PATH, {"file_ids": [file_id]})
        status = _status_of(answer, file_id)
        if status in _SUCCESS:
            return
        if status in _FAILED:
            raise FileRejected(f"upstream could not parse {name!r}")
        if loop.time() + pause > deadline:
            raise FileRejected(f"upstream did not finish parsing {name!r} within {limit:g} s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _status_of(answer: dict[str, Any], file_id: str) -> object:
    for progress in answer.get("progresses") or []:
        if isinstance(progress, dict) and progress.get("fileId", progress.get("file_id")) == file_id:
            return progress.get("status")
    return None
