"""The fetcher against a real HTTP(S) server on 127.0.0.1.

The server counts the connections it accepts, so "refused before connecting" is proven by a listener
that accepted nothing; requests to other addresses are counted at the transport, which wraps the real
``httpx.AsyncHTTPTransport`` (and tests/conftest.py would fail any non-loopback connect besides).
Host names resolve through a test resolver, so ``metadata.test`` can "be" 169.254.169.254 offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.files.fetch import FetchedFile, FetchFailed, FetchRefused, fetch_url, fetch_with
from gateway.files.netguard import IPAddress

Route = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclasses.dataclass
class Seen:
    path: str
    headers: dict[str, str]


class LoopbackServer:
    """A tiny HTTP/1.1 server on 127.0.0.1:0, one request per connection, recording what it receives."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.connections = 0
        self.requests: list[Seen] = []
        self.stream_cut = asyncio.Event()
        self.sni_names: list[str | None] = []
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni_names.append(name)  # type: ignore[assignment]
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _method, target, _version = head[0].split(" ")
            headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
            path = target.split("?")[0]
            self.requests.append(Seen(path=path, headers=headers))
            await self.routes.get(path, reply(404, b"not here"))(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away, which several tests make it do
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    async def route(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fields = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    return route


def stall(head: bytes = b"") -> Route:
    """Send ``head`` (maybe nothing) and then wait until the client hangs up."""

    async def route(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        await reader.read()

    return route


def endless(server: LoopbackServer) -> Route:
    """A body without a length that never ends; ``stream_cut`` is set when the client stops reading."""

    async def route(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
        try:
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            server.stream_cut.set()
            raise

    return route


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer()
    await running.start()
    yield running
    await running.stop()


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, recording the address each request is sent to."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent_to: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent_to.append(request.url.host)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def transport() -> AsyncIterator[CountingTransport]:
    async with CountingTransport(httpx.AsyncHTTPTransport(retries=0)) as counting:
        yield counting


def resolver_for(table: dict[str, Sequence[str]]) -> Callable[[str, int], Awaitable[list[IPAddress]]]:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"test resolver: no records for {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


async def fetch(
    url: str,
    transport: httpx.AsyncBaseTransport,
    table: dict[str, Sequence[str]],
    *,
    allow: Sequence[str] = ("127.0.0.1",),
    max_bytes: int = 100_000,
    max_redirects: int = 3,
    timeout: float = 5.0,
) -> FetchedFile:
    return await fetch_with(
        url,
        max_bytes=max_bytes,
        timeout=timeout,
        allow=allow,
        max_redirects=max_redirects,
        resolver=resolver_for(table),
        transport=transport,
    )


# --------------------------------------------------------------------------------------------------
# Success


async def test_it_fetches_from_an_allow_listed_loopback_server(server: LoopbackServer) -> None:
    headers = {
        "Content-Type": "application/pdf; name=x",
        "Content-Disposition": "attachment; filename=\"report.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        "Set-Cookie": "session=abc",
    }
    server.routes["/files/download"] = reply(200, b"%PDF-1.7 ...", headers)
    url = f"http://127.0.0.1:{server.port}/files/download?id=7"

    fetched = await fetch_url(url, max_bytes=1000, timeout=5, allow=["127.0.0.0/8"], max_redirects=0)

    assert fetched == FetchedFile(
        data=b"%PDF-1.7 ...", content_type="application/pdf", filename="résumé.pdf", final_url=url
    )
    (seen,) = server.requests
    assert seen.headers["host"] == f"127.0.0.1:{server.port}"
    assert seen.headers["user-agent"] == "kimiproxy"
    assert seen.headers["accept-encoding"] == "identity"
    assert {"cookie", "authorization", "proxy-authorization"}.isdisjoint(seen.headers)


async def test_it_connects_an_allow_listed_host_name_to_the_address_it_resolved(
    server: LoopbackServer, transport: CountingTransport
) -> None:
    server.routes["/cat.png"] = reply(200, b"png", {"Content-Type": "image/png"})
    url = f"http://Files.Internal.Example:{server.port}/cat.png"

    fetched = await fetch(url, transport, {"files.internal.example": ["127.0.0.1"]}, allow=["files.internal.example"])

    assert (fetched.data, fetched.content_type, fetched.filename) == (b"png", "image/png", "cat.png")
    assert transport.sent_to == ["127.0.0.1"]
    assert server.requests[0].headers["host"] == f"files.internal.example:{server.port}"


async def test_it_follows_redirects_between_allowed_hops(server: LoopbackServer, transport: CountingTransport) -> None:
    server.routes["/a"] = reply(302, headers={"Location": f"http://mirror.test:{server.port}/b"})
    server.routes["/b"] = reply(301, headers={"Location": "/files/final.txt"})
    server.routes["/files/final.txt"] = reply(200, b"done")

    fetched = await fetch(
        f"http://127.0.0.1:{server.port}/a", transport, {"mirror.test": ["127.0.0.1"]}, max_redirects=2
    )

    assert fetched.data == b"done"
    assert fetched.final_url == f"http://mirror.test:{server.port}/files/final.txt"
    assert [seen.path for seen in server.requests] == ["/a", "/b", "/files/final.txt"]
    assert [seen.headers["host"] for seen in server.requests][1:] == [f"mirror.test:{server.port}"] * 2


# --------------------------------------------------------------------------------------------------
# Refusals: the listener accepts nothing, the transport sends nothing


@pytest.mark.parametrize(
    ("host", "records"),
    [
        ("127.0.0.1", []),
        ("[::ffff:127.0.0.1]", []),
        ("loopback.test", ["127.0.0.1"]),
        ("sneaky.test", ["93.184.215.14", "127.0.0.1"]),
        ("mapped.test", ["::ffff:127.0.0.1"]),
    ],
)
async def test_it_refuses_loopback_that_is_not_allow_listed_before_connecting(
    server: LoopbackServer, transport: CountingTransport, host: str, records: list[str]
) -> None:
    server.routes["/"] = reply(200, b"secret")
    table = {host: records} if records else {}

    with pytest.raises(FetchRefused, match="loopback"):
        await fetch(f"http://{host}:{server.port}/", transport, table, allow=["10.0.0.0/8", "files.internal.example"])

    assert transport.sent_to == []
    assert server.connections == 0


async def test_it_refuses_literal_loopback_through_the_public_function(server: LoopbackServer) -> None:
    with pytest.raises(FetchRefused, match="127.0.0.1"):
        await fetch_url(f"http://127.0.0.1:{server.port}/", max_bytes=10, timeout=5, allow=[], max_redirects=0)
    assert server.connections == 0


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.1", "100.64.0.1", "fd00::1", "::ffff:192.168.0.1"])
async def test_it_refuses_a_redirect_to_a_forbidden_address(
    server: LoopbackServer, transport: CountingTransport, address: str
) -> None:
    server.routes["/start"] = reply(302, headers={"Location": "http://metadata.test/latest/meta-data/"})

    with pytest.raises(FetchRefused, match="metadata.test"):
        await fetch(f"http://127.0.0.1:{server.port}/start", transport, {"metadata.test": [address]})

    assert transport.sent_to == ["127.0.0.1"]
    assert [seen.path for seen in server.requests] == ["/start"]


async def test_it_refuses_more_redirects_than_allowed(server: LoopbackServer, transport: CountingTransport) -> None:
    server.routes["/loop"] = reply(307, headers={"Location": "/loop"})

    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        await fetch(f"http://127.0.0.1:{server.port}/loop", transport, {}, max_redirects=3)

    assert len(server.requests) == 4


# --------------------------------------------------------------------------------------------------
# Failures


async def test_it_fails_early_on_a_declared_length_over_the_cap(
    server: LoopbackServer, transport: CountingTransport
) -> None:
    # The server declares 10 MB, sends 10 bytes and waits: only the header can end this fetch in time.
    server.routes["/big"] = stall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n0123456789")

    with pytest.raises(FetchFailed, match="sends 10000000 bytes, more than the limit of 1000"):
        await fetch(f"http://127.0.0.1:{server.port}/big", transport, {}, max_bytes=1000)


async def test_it_stops_reading_an_endless_body_at_the_cap(
    server: LoopbackServer, transport: CountingTransport
) -> None:
    server.routes["/endless"] = endless(server)

    with pytest.raises(FetchFailed, match="sent more than the limit of 200000 bytes"):
        await fetch(f"http://127.0.0.1:{server.port}/endless", transport, {}, max_bytes=200_000)

    async with asyncio.timeout(10):  # a safety net, not a speed assertion: the server sees the hang-up
        await server.stream_cut.wait()


async def test_it_gives_up_on_a_server_that_never_answers(server: LoopbackServer, transport: CountingTransport) -> None:
    server.routes["/slow"] = stall()

    with pytest.raises(FetchFailed, match="took longer than 0.2 s"):
        await fetch(f"http://127.0.0.1:{server.port}/slow", transport, {}, timeout=0.2)

    assert [seen.path for seen in server.requests] == ["/slow"]


async def test_it_fails_on_an_error_status(server: LoopbackServer, transport: CountingTransport) -> None:
    with pytest.raises(FetchFailed, match="HTTP 404"):
        await fetch(f"http://127.0.0.1:{server.port}/missing", transport, {})


async def test_it_fails_when_nothing_listens(transport: CountingTransport) -> None:
    closed = LoopbackServer()
    await closed.start()
    port = closed.port
    await closed.stop()

    with pytest.raises(FetchFailed, match="could not connect"):
        await fetch(f"http://127.0.0.1:{port}/", transport, {})


# --------------------------------------------------------------------------------------------------
# HTTPS: the certificate is checked against the URL's host name, not the pinned address


@dataclasses.dataclass(frozen=True)
class Pki:
    server: ssl.SSLContext  # serves a certificate for files.example only (no IP address in it)
    client: ssl.SSLContext  # trusts the test CA


def _certificate(
    subject: str, issuer: str, public_key: ec.EllipticCurvePublicKey, signer: ec.EllipticCurvePrivateKey, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("kimiproxy test CA", "kimiproxy test CA", ca_key.public_key(), ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("files.example", "kimiproxy test CA", leaf_key.public_key(), ca_key, ca=False)
    folder: Path = tmp_path_factory.mktemp("pki")
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return Pki(server=server, client=client)


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[LoopbackServer]:
    running = LoopbackServer()
    await running.start(tls=pki.server)
    yield running
    await running.stop()


async def test_it_verifies_https_against_the_url_host_while_connecting_to_the_pinned_address(
    tls_server: LoopbackServer, pki: Pki
) -> None:
    tls_server.routes["/img.png"] = reply(200, b"png over tls", {"Content-Type": "image/png"})
    table = {"files.example": ["127.0.0.1"]}

    async with httpx.AsyncHTTPTransport(verify=pki.client, retries=0) as transport:
        fetched = await fetch(f"https://files.example:{tls_server.port}/img.png", transport, table)

    assert fetched.data == b"png over tls"
    assert tls_server.sni_names == ["files.example"]
    assert tls_server.requests[0].headers["host"] == f"files.example:{tls_server.port}"


async def test_it_refuses_a_certificate_for_another_host(tls_server: LoopbackServer, pki: Pki) -> None:
    tls_server.routes["/img.png"] = reply(200, b"png over tls")
    table = {"other.example": ["127.0.0.1"]}

    async with httpx.AsyncHTTPTransport(verify=pki.client, retries=0) as transport:
        with pytest.raises(FetchFailed, match="not valid for 'other.example'"):
            await fetch(f"https://other.example:{tls_server.port}/img.png", transport, table)

    assert tls_server.requests == []
