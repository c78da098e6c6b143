"""Client files: data:/http(s) URLs to blobs, upload flows of both protocols, the per-account cache."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway.kimi import session_for
from gateway.kimi.base import FileBlob, FileRejected, TurnRequest
from gateway.kimi.fake import FakeKimi
from gateway.kimi.uploads import blob_from_url, sniff_type, upload_cached
from tests.integration.kimi_client_helpers import aaccount_for, close_worker_connections, http, run_turn, text_of

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["close_worker_connections", "http"]  # fixtures, imported for pytest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"report body " * 50
FILES: dict[str, tuple[bytes, dict[str, str]]] = {
    "/docs/report.pdf": (PDF, {"Content-Type": "application/pdf"}),
    "/download": (PNG, {"Content-Type": "application/octet-stream"}),
    "/named": (b"hello, text", {"Content-Disposition": 'attachment; filename="notes.txt"'}),
}


class _FileHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data, headers = FILES.get(self.path, (b"", {}))
        self.send_response(200 if data else 404)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_it_refuses_loopback_urls_unless_allowed(file_server: str, settings: Any) -> None:
    settings.KIMIPROXY_FETCH_ALLOW = []
    with pytest.raises(FileRejected, match="could not fetch"):
        await blob_from_url(file_server + "/docs/report.pdf")
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    assert await blob_from_url(file_server + "/docs/report.pdf") == FileBlob("report.pdf", "application/pdf", PDF)


async def test_it_names_and_types_downloads_from_headers_url_or_content(file_server: str, settings: Any) -> None:
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    assert await blob_from_url(file_server + "/download") == FileBlob("download.png", "image/png", PNG)
    named = await blob_from_url(file_server + "/named")
    assert (named.name, named.mime_type) == ("notes.txt", "text/plain")


async def test_it_reports_download_failures(file_server: str, settings: Any) -> None:
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    with pytest.raises(FileRejected):
        await blob_from_url(file_server + "/missing")
    settings.KIMIPROXY_FILE_MAX_BYTES = 10
    with pytest.raises(FileRejected):
        await blob_from_url(file_server + "/docs/report.pdf")


async def test_it_decodes_base64_data_urls() -> None:
    blob = await blob_from_url("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert blob == FileBlob("file.png", "image/png", PNG) and blob.kind == "image"
    text = await blob_from_url("data:,hello%20world")
    assert text.data == b"hello world" and text.mime_type == "text/plain"


@pytest.mark.parametrize(
    "url", ["data:image/png;base64,@@@", "data:image/png;base64", "ftp://example.org/x", "file:///etc/passwd"]
)
async def test_it_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(FileRejected):
        await blob_from_url(url)


async def test_it_caps_data_url_size(settings: Any) -> None:
    settings.KIMIPROXY_FILE_MAX_BYTES = 16
    with pytest.raises(FileRejected, match="larger than 16"):
        await blob_from_url("data:image/png;base64," + base64.b64encode(PNG).decode())


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (PDF, "application/pdf"),
        ("plain text, ünïcode".encode(), "text/plain"),
        (b"\x00\x01\x02\xfe\xff", "application/octet-stream"),
    ],
)
def test_it_sniffs_common_types(data: bytes, mime: str) -> None:
    assert sniff_type(data) == mime


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
@pytest.mark.parametrize(
    "blob", [FileBlob("report.pdf", "application/pdf", PDF), FileBlob("photo.png", "image/png", PNG)]
)
async def test_it_uploads_once_per_account_and_references_the_file(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, blob: FileBlob
) -> None:
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    session = session_for(account, http=http)
    ref = await upload_cached(session=session, account_id=account.pk, blob=blob)
    assert (ref.name, ref.kind) == (blob.name, blob.kind)
    stored = fake_kimi.files[ref.file_id]
    assert stored.sha256 == hashlib.sha256(blob.data).hexdigest() and stored.data == blob.data
    again = await upload_cached(
        session=session, account_id=account.pk, blob=FileBlob("renamed", blob.mime_type, blob.data)
    )
    assert again.file_id == ref.file_id
    assert fake_kimi.count("upload") == 1
    events, error = await run_turn(session, TurnRequest(text="Summarise the file", files=(ref,)))
    assert error is None and text_of(events)
    chat = fake_kimi.chats[events[0].chat_id]  # type: ignore[union-attr]
    assert chat.messages[0].files == [ref.file_id]


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_a_name_or_type_that_cannot_be_a_header_is_uploaded_cleaned(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str
) -> None:
    # From a client's data: URL and filename; the HTTP client refused them as header injection (a 500).
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    blob = FileBlob("notes\r\nX-Evil: 1\ud800.txt", "text/plain\r\nX-Evil: 1", b"some notes")
    ref = await upload_cached(session=session_for(account, http=http), account_id=account.pk, blob=blob)
    assert ref.name == "notes__X-Evil: 1_.txt"
    assert fake_kimi.files[ref.file_id].data == b"some notes"


async def test_it_uploads_again_for_another_account(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    blob = FileBlob("report.pdf", "application/pdf", PDF)
    for name in ("alice", "bob"):
        account = await aaccount_for(fake_kimi.mint_account(name))
        await upload_cached(session=session_for(account, http=http), account_id=account.pk, blob=blob)
    assert fake_kimi.count("upload") == 2


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_it_rejects_a_file_the_upstream_cannot_parse(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str
) -> None:
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    session = session_for(account, http=http)
    with pytest.raises(FileRejected, match="could not parse"):
        await session.upload(FileBlob("fail-scan.pdf", "application/pdf", PDF))


@pytest.mark.parametrize("protocol", ["connect", "legacy"])
async def test_it_gives_up_when_parsing_takes_too_long(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, protocol: str, settings: Any
) -> None:
    fake_kimi.configure(parse_delay=5.0)
    settings.KIMIPROXY_PARSE_TIMEOUT = 0.4
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol=protocol))
    with pytest.raises(FileRejected, match="did not finish parsing 'report.pdf' within 0.4 s"):
        await session_for(account, http=http).upload(FileBlob("report.pdf", "application/pdf", PDF))


@pytest.mark.parametrize(
    "blob", [FileBlob("report.pdf", "application/pdf", PDF), FileBlob("photo.png", "image/png", PNG)]
)
async def test_it_re_posts_a_legacy_file_until_the_upstream_registered_it(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, blob: FileBlob
) -> None:
    # kimi-web-protocol.md C.12: /api/file may answer before the object is registered; parse_process
    # does not know such a file, so the client must ask again until it is `initialized`.
    fake_kimi.fault("file_pending", times=3)
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol="legacy"))
    session = session_for(account, http=http)
    ref = await session.upload(blob)
    assert fake_kimi.count("file") == 4
    assert [c.body for c in fake_kimi.calls if c.kind == "file"][0] == [
        c.body for c in fake_kimi.calls if c.kind == "file"
    ][-1]
    events, error = await run_turn(session, TurnRequest(text="Summarise the file", files=(ref,)))
    assert error is None and text_of(events)


async def test_it_stops_re_posting_a_legacy_file_after_the_bound(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, settings: Any
) -> None:
    settings.KIMIPROXY_PARSE_TIMEOUT = 0.5
    fake_kimi.fault("file_pending", times=None)
    account = await aaccount_for(fake_kimi.mint_account("alice", protocol="legacy"))
    with pytest.raises(FileRejected, match="did not register 'report.pdf' within 0.5 s"):
        await session_for(account, http=http).upload(FileBlob("report.pdf", "application/pdf", PDF))
    assert 2 <= fake_kimi.count("file") <= 5


async def test_it_rejects_a_file_over_the_upstream_size_cap(fake_kimi: FakeKimi, http: httpx.AsyncClient) -> None:
    fake_kimi.configure(max_file_bytes=100)
    for protocol in ("connect", "legacy"):
        account = await aaccount_for(fake_kimi.mint_account(f"user-{protocol}", protocol=protocol))
        with pytest.raises(FileRejected):
            await session_for(account, http=http).upload(FileBlob("report.pdf", "application/pdf", PDF))


async def test_it_attaches_a_file_fetched_by_url(
    fake_kimi: FakeKimi, http: httpx.AsyncClient, file_server: str, settings: Any
) -> None:
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    account = await aaccount_for(fake_kimi.mint_account("alice"))
    session = session_for(account, http=http)
    blob = await blob_from_url(file_server + "/docs/report.pdf")
    ref = await upload_cached(session=session, account_id=account.pk, blob=blob)
    events, error = await run_turn(session, TurnRequest(text="Summarise the attached report", files=(ref,)))
    assert error is None and text_of(events)
    stored = fake_kimi.files[ref.file_id]
    assert (stored.name, stored.content_type, stored.data) == ("report.pdf", "application/pdf", PDF)
    chat_body = next(c for c in fake_kimi.calls if c.kind == "chat").body
    assert chat_body["message"]["blocks"][1] == {"file": {"id": ref.file_id, "status": "PROCESS_STATUS_SUCCESS"}}
