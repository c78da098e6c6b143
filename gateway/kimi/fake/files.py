"""File flows of both protocols: Connect multipart upload, parse progress and signed download (doc 2.11);
legacy pre-sign, PUT to fake object storage, ``/api/file`` and ``parse_process`` (doc 1.14)."""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from typing import Any

from gateway.kimi.fake.common import authenticate, connect_unary_error, field, legacy_error
from gateway.kimi.fake.connect import rfc3339
from gateway.kimi.fake.control import FakeKimi
from gateway.kimi.fake.http import Request
from gateway.kimi.fake.ids import uuid_id, xid
from gateway.kimi.fake.records import AccountState, Call, FileRecord
from gateway.kimi.fake.script import has_fault
from gateway.kimi.fake.state import State
from gateway.kimi.fake.writes import sse

STORAGE_PREFIX = "/fake-oss/"  # the fake's object storage for legacy pre-signed PUTs


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str, str, bytes]]:
    """Form parts by field name: (filename, content type, bytes). Enough for clients' uploads."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    parts: dict[str, tuple[str, str, bytes]] = {}
    if not boundary:
        return parts
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = _disposition(headers.get("content-disposition", ""))
        ctype = headers.get("content-type", "application/octet-stream")
        parts[disposition.get("name", "")] = (disposition.get("filename", ""), ctype, data.removesuffix(b"\r\n"))
    return parts


def _disposition(value: str) -> dict[str, str]:
    params = {}
    for item in value.split(";")[1:]:
        key, _, val = item.strip().partition("=")
        params[key.lower()] = val.strip().strip('"')
    return params


def _new_file(state: State, account: AccountState, name: str, ctype: str, data: bytes, fail: bool) -> FileRecord:
    digest = hashlib.sha256(data).hexdigest()
    record = FileRecord(uuid_id(), account.name, name, ctype, data, digest)
    record.failed = fail or name.startswith("fail-")
    record.ready_at = time.monotonic() + state.options.parse_delay
    state.files[record.id] = record
    state.blobs[digest] = record
    return record


def _signature(state: State, digest: str) -> str:
    return hmac.new(state.sign_secret, digest.encode(), hashlib.sha256).hexdigest()[:32]


def _sign_url(req: Request, state: State, record: FileRecord, t: str = "o") -> str:
    key = urllib.parse.quote(f"kimi-fs/files/blob/{record.sha256}", safe="")
    query = urllib.parse.urlencode({"filename": record.name, "sig": _signature(state, record.sha256), "t": t})
    return f"{req.base_url}/apiv2-files/sign-obj/{key}?{query}"


async def connect_upload(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="connect")
    if account is None:
        return
    part = parse_multipart(req.body, req.headers.get("content-type", "")).get("file")
    if part is None:
        await connect_unary_error(req, call, "invalid_argument", "multipart field 'file' is required")
        return
    name, ctype, data = part
    call.body, call.upload = {"filename": name, "content_type": ctype}, data
    with fake.lock:
        if len(data) > fake.state.options.max_file_bytes:
            too_big = True
        else:
            too_big = False
            fail = has_fault(fake.state.script.take_faults("upload", account.name), "parse_failed") is not None
            record = _new_file(fake.state, account, name, ctype, data, fail)
            answer = _connect_file(req, fake.state, record)
    if too_big:
        await connect_unary_error(req, call, "invalid_argument", "file is too large")
        return
    await req.respond_json(200, {"file": answer})


def _connect_file(req: Request, state: State, record: FileRecord) -> dict[str, Any]:
    image = record.content_type.startswith("image/")
    meta = {"name": record.name, "contentType": record.content_type, "sizeBytes": str(len(record.data))}
    meta.update({"checksum": record.sha256, "ext": record.name.rpartition(".")[2] if "." in record.name else ""})
    meta.update({"createTime": rfc3339(time.time()), "type": "FILE_TYPE_IMAGE" if image else "FILE_TYPE_DOCUMENT"})
    answer: dict[str, Any] = {
        "id": record.id,
        "meta": meta,
        "blob": {"signUrl": _sign_url(req, state, record), "previewUrl": ""},
    }
    if image:
        thumbs = {"thumbnailUrl": "t", "previewUrl": "p", "mobileThumbnailUrl": "m"}
        answer["parseResult"] = {"thumbnail": {k: _sign_url(req, state, record, t) for k, t in thumbs.items()}}
    return answer


def parse_status(record: FileRecord) -> str:
    """PROCESSING on the first poll and until ``parse_delay`` passed, then SUCCESS or FAILED."""
    first = record.polls == 0
    record.polls += 1
    if first or time.monotonic() < record.ready_at:
        return "PROCESS_STATUS_PROCESSING"
    return "PROCESS_STATUS_FAILED" if record.failed else "PROCESS_STATUS_SUCCESS"


async def connect_parse(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="connect")
    if account is None:
        return
    call.body = req.json()
    ids = field(call.body, "file_ids") or []
    with fake.lock:
        records = [fake.state.files.get(str(i)) for i in ids]
        if any(r is None or r.account != account.name for r in records):
            progresses = None
        else:
            progresses = [{"fileId": r.id, "status": parse_status(r)} for r in records if r]
    if progresses is None:
        await connect_unary_error(req, call, "not_found", "file not found")
        return
    await req.respond_json(200, {"progresses": progresses})


async def connect_download(fake: FakeKimi, req: Request, call: Call) -> None:
    """``GET /apiv2-files/sign-obj/<key>``: no authorization, the signature is the key (doc 2.11.4)."""
    key = urllib.parse.unquote(req.path.removeprefix("/apiv2-files/sign-obj/"))
    digest = key.rpartition("/")[2]
    with fake.lock:
        record = fake.state.blobs.get(digest)
        good = record is not None and hmac.compare_digest(req.query.get("sig", ""), _signature(fake.state, digest))
    if not good or record is None:
        call.status = 403
        await req.respond(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
        return
    filename = urllib.parse.quote(req.query.get("filename") or record.name)
    headers = [("content-disposition", f"attachment; filename*=UTF-8''{filename}"), ("server", "TosServer")]
    await req.respond(200, record.data, record.content_type, headers)


# ---- legacy (doc 1.14)


async def legacy_presign(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    body = req.json_object()
    call.body = body
    name = str(body.get("name") or "file")
    folder = xid()
    object_name = f"kimi-upload/{folder}/{name}"
    url = f"{req.base_url}{STORAGE_PREFIX}{urllib.parse.quote(object_name)}?X-Amz-Expires=3600&X-Amz-Signature={folder}"
    answer = {"url": url, "object_name": object_name}
    if body.get("action") == "image":
        answer["file_id"] = folder
    await req.respond_json(200, answer)


async def legacy_put(fake: FakeKimi, req: Request, call: Call) -> None:
    """The pre-signed PUT: the storage host ignores Kimi's headers (doc 1.14.1 step 2)."""
    object_name = urllib.parse.unquote(req.path.removeprefix(STORAGE_PREFIX))
    call.body, call.upload = {"object_name": object_name}, req.body
    with fake.lock:
        too_big = len(req.body) > fake.state.options.max_file_bytes
        if not too_big:
            fail = has_fault(fake.state.script.take_faults("upload", None), "parse_failed") is not None
            ctype = req.headers.get("content-type", "application/octet-stream")
            fake.state.objects[object_name] = (req.body, ctype + (";fail" if fail else ""))
    call.status = 413 if too_big else 200
    await req.respond(call.status)


async def legacy_file(fake: FakeKimi, req: Request, call: Call) -> None:
    account = await authenticate(fake, req, call, protocol="legacy")
    if account is None:
        return
    body = req.json_object()
    call.body = body
    with fake.lock:
        pending = has_fault(fake.state.script.take_faults("file", account.name), "file_pending") is not None
        record = _legacy_register(fake.state, account, body)
        answer = None if record is None else _legacy_file_object(record, pending=pending)
    if answer is None:
        await legacy_error(req, call, 400, "validation.error", "文件不存在", ["object not uploaded"])
        return
    await req.respond_json(200, answer)


def _legacy_register(state: State, account: AccountState, body: dict[str, Any]) -> FileRecord | None:
    """First call registers the object (status ``initialized``); later calls see ``parsed`` once ready."""
    file_id = str(body.get("file_id") or "")
    object_name = str(body.get("object_name") or "")
    if file_id and file_id in state.files:
        return state.files[file_id]
    existing = next((f for f in state.files.values() if object_name and f.object_name == object_name), None)
    if existing is not None:
        return existing
    if file_id:  # image flow: object name from the pre-sign answer's folder
        object_name = next((o for o in state.objects if o.split("/")[1:2] == [file_id]), "")
    stored = state.objects.get(object_name)
    if stored is None:
        return None
    data, ctype = stored
    record = _new_file(
        state, account, str(body.get("name") or object_name), ctype.removesuffix(";fail"), data, ctype.endswith(";fail")
    )
    state.files.pop(record.id)
    record.id, record.object_name = file_id or xid(), object_name
    record.kind = "image" if body.get("type") == "image" else "file"
    state.files[record.id] = record
    return record


def _legacy_status(record: FileRecord) -> str:
    if record.failed and time.monotonic() >= record.ready_at:
        status = "failed"
    elif record.kind == "image" or (record.registered and time.monotonic() >= record.ready_at):
        status = "parsed"
    else:
        status = "initialized"
    record.registered = True  # parse_process knows the file from now on
    return status


def _legacy_file_object(record: FileRecord, *, pending: bool = False) -> dict[str, Any]:
    """``pending`` (the ``file_pending`` fault): the object is not registered yet, so the client must
    POST /api/file again until it is ``initialized`` (kimi-web-protocol.md C.12)."""
    now = rfc3339(time.time())
    status = "uploading" if pending else _legacy_status(record)
    return {
        "id": record.id, "name": record.name, "parent_path": "", "type": record.kind, "size": len(record.data),
        "status": status, "presigned_url": "", "text_presigned_url": "",
        "uploaded_at": now, "created_at": now, "updated_at": now,
    }  # fmt: skip


def parse_events(state: State, account: AccountState, ids: list[Any]) -> list[bytes] | None:
    """SSE ``resp`` events for ``parse_process``: ``parsing`` then ``parsed``/``failed`` (doc 1.14.1 step 4)."""
    records = [state.files.get(str(i)) for i in ids]
    # A file /api/file never answered `initialized` (or later) for is unknown here (C.12).
    if any(r is None or r.account != account.name or not r.registered for r in records):
        return None
    events = []
    for stage in ("parsing", "final"):
        for r in records:
            assert r is not None
            status = stage if stage == "parsing" else ("failed" if r.failed else "parsed")
            info: dict[str, Any] = {
                "id": r.id,
                "name": r.name,
                "type": r.kind,
                "content_type": r.content_type,
                "status": status,
            }
            info.update(
                {
                    "size": len(r.data),
                    "token_size": len(r.data) // 4,
                    "failed_reason": "bad file" if status == "failed" else "",
                }
            )
            events.append(sse({"event": "resp", "id": r.id, "status": status, "file_info": info}))
    return events


def remaining_parse_delay(state: State, ids: list[Any]) -> float:
    now = time.monotonic()
    return max([state.files[str(i)].ready_at - now for i in ids if str(i) in state.files] + [0.0])
