"""Client files -> upstream files: decode or download, then upload once per account.

``blob_from_url`` turns an OpenAI-style file/image URL (``data:``, or http(s) fetched under the SSRF
guard of ``gateway/files/fetch.py``) into a ``FileBlob`` with a name and MIME type; ``upload_cached``
uploads it through the account's session unless the same bytes (SHA-256) were already uploaded for that
account, which re-sent chat histories make common.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import mimetypes
import posixpath
import re
import unicodedata
import urllib.parse
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction

from gateway.db.threads import db_call
from gateway.files.fetch import FetchFailed, FetchRefused, fetch_url
from gateway.kimi.base import FileBlob, FileRef, FileRejected, KimiSession
from gateway.models import UploadedFile

GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/unknown")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


async def blob_from_url(url: str) -> FileBlob:
    """Decode a ``data:`` URL or download an http(s) URL; FileRejected when it cannot be used."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        return _from_data_url(url)
    if scheme not in ("http", "https"):
        raise FileRejected("file URLs must be data:, http: or https:")
    try:
        fetched = await fetch_url(
            url,
            max_bytes=settings.KIMIPROXY_FILE_MAX_BYTES,
            timeout=settings.KIMIPROXY_FETCH_TIMEOUT,
            allow=settings.KIMIPROXY_FETCH_ALLOW,
            max_redirects=settings.KIMIPROXY_FETCH_MAX_REDIRECTS,
        )
    except (FetchRefused, FetchFailed) as exc:
        raise FileRejected(f"could not fetch the file: {exc}") from None
    name = fetched.filename or _name_from_url(fetched.final_url)
    return _blob(name, fetched.content_type, fetched.data)


def _from_data_url(url: str) -> FileBlob:
    header, sep, payload = url[len("data:") :].partition(",")
    if not sep:
        raise FileRejected("malformed data: URL")
    params = header.split(";")
    is_base64 = params[-1].strip().lower() == "base64"
    # Base64 grows data by 4/3: refuse before decoding anything too large.
    if len(payload) * (3 / 4 if is_base64 else 1) > settings.KIMIPROXY_FILE_MAX_BYTES + 4:
        raise FileRejected(f"file is larger than {settings.KIMIPROXY_FILE_MAX_BYTES} bytes")
    try:
        data = base64.b64decode(payload, validate=True) if is_base64 else urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise FileRejected("data: URL is not valid base64") from None
    if len(data) > settings.KIMIPROXY_FILE_MAX_BYTES:
        raise FileRejected(f"file is larger than {settings.KIMIPROXY_FILE_MAX_BYTES} bytes")
    name = next((p.split("=", 1)[1] for p in params if p.strip().startswith("name=")), "")
    return _blob(urllib.parse.unquote(name), params[0].strip() or None, data)


def _name_from_url(url: str) -> str:
    return posixpath.basename(urllib.parse.urlsplit(url).path)


def _blob(name: str, content_type: str | None, data: bytes) -> FileBlob:
    """Name and MIME type from headers, URL or content: a generic or missing type is sniffed."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in GENERIC_TYPES:
        mime = sniff_type(data) if not name else (mimetypes.guess_type(name)[0] or sniff_type(data))
    name = (name or "").strip().replace("/", "_") or "file"
    if not posixpath.splitext(name)[1]:
        name += mimetypes.guess_extension(mime) or ""
    return FileBlob(name=name[:200], mime_type=mime, data=data)


def sniff_type(data: bytes) -> str:
    """MIME type from magic bytes (png, jpeg, gif, webp, pdf), else text/plain or octet-stream."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4092:  # a character cut by the 4 KiB window is still text
            return "application/octet-stream"
    return "text/plain" if b"\0" not in data[:4096] else "application/octet-stream"


_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")


def blob_for_upload(blob: FileBlob) -> FileBlob:
    """The blob with a name and type that can go in a multipart header: a client's name may hold control
    characters (``\r\n``, lone surrogates) and its ``data:`` URL any type text, which the HTTP client
    refuses as header injection. Those become ``_``, and a malformed type a generic one."""
    name = "".join("_" if unicodedata.category(ch)[0] == "C" else ch for ch in blob.name).strip() or "file"
    mime = blob.mime_type if _MEDIA_TYPE_RE.fullmatch(blob.mime_type) else "application/octet-stream"
    return blob if (name, mime) == (blob.name, blob.mime_type) else dataclasses.replace(blob, name=name, mime_type=mime)


async def upload_cached(*, session: KimiSession, account_id: int, blob: FileBlob) -> FileRef:
    """The account's upload of these bytes, uploading only when it has none yet."""
    blob = blob_for_upload(blob)
    digest = hashlib.sha256(blob.data).hexdigest()
    cached = await db_call(_cached, account_id, digest)
    if cached is not None:
        return cached
    ref = await session.upload(blob)
    await db_call(_remember, account_id, digest, ref)
    return ref


def _cached(account_id: int, digest: str) -> FileRef | None:
    row = UploadedFile.objects.filter(account_id=account_id, sha256=digest).first()
    if row is None:
        return None
    kind: Literal["file", "image"] = "image" if row.kind == "image" else "file"
    extra = tuple(sorted((str(k), str(v)) for k, v in (row.extra or {}).items()))
    return FileRef(file_id=row.file_id, name=row.name, kind=kind, size=row.size, extra=extra)


def _remember(account_id: int, digest: str, ref: FileRef) -> None:
    # A concurrent request may have uploaded the same bytes first; either upload is usable.
    with contextlib.suppress(IntegrityError), transaction.atomic():
        UploadedFile.objects.create(
            account_id=account_id,
            sha256=digest,
            file_id=ref.file_id,
            name=ref.name[:255],
            kind=ref.kind,
            size=ref.size,
            extra=dict(ref.extra),
        )
