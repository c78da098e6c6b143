"""The SSRF guard's decisions, proven at the transport seam: a refused fetch never reaches the transport.

``httpx.MockTransport`` stands where the network would be; it records every request it is handed, so
"nothing was sent" is an assertion on an empty list. No sockets are opened here.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest

from gateway.files.fetch import FetchedFile, FetchFailed, FetchRefused, disposition_filename, fetch_with, safe_filename
from gateway.files.netguard import IPAddress, Resolver, address_allowed, parse_allow_list, refusal_reason, resolve_host

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

FORBIDDEN = [
    "127.0.0.1",
    "127.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # shared address space
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fec0::1",  # site-local
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # teredo, client 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2001:db8::1",  # documentation
]
PUBLIC = [PUBLIC_V4, "8.8.8.8", "1.1.1.1", PUBLIC_V6, "2a00:1450:4001:81c::200e", "::ffff:8.8.8.8", "2002:808:808::1"]


def streamed(data: bytes, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response whose body streams as a real transport's does (``content=bytes`` arrives pre-read)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return httpx.Response(status, headers=headers, content=chunks())


class Recorder:
    """A MockTransport handler that records requests and answers from a path -> response table."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.routes = routes or {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(request.url.path)
        return route(request) if route else streamed(b"hello")

    @property
    def hosts(self) -> list[str]:
        return [request.url.host for request in self.requests]


def resolver_for(table: dict[str, Sequence[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"test resolver: no records for {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


async def fetch(
    url: str,
    recorder: Recorder,
    table: dict[str, Sequence[str]] | None = None,
    *,
    allow: Sequence[str] = (),
    max_bytes: int = 1000,
    max_redirects: int = 3,
    timeout: float = 5.0,
) -> FetchedFile:
    return await fetch_with(
        url,
        max_bytes=max_bytes,
        timeout=timeout,
        allow=allow,
        max_redirects=max_redirects,
        resolver=resolver_for(table or {}),
        transport=httpx.MockTransport(recorder),
    )


def redirect(location: str, status: int = 302) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, headers={"Location": location})


# --------------------------------------------------------------------------------------------------
# Pure decisions


@pytest.mark.parametrize("address", FORBIDDEN)
def test_it_refuses_non_public_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is not None
    assert not address_allowed(ip, [])


@pytest.mark.parametrize("address", PUBLIC)
def test_it_allows_public_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is None
    assert address_allowed(ip, [])


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("2002:7f00:1::1", "loopback (embedded 127.0.0.1)"),
        ("fd00::1", "unique-local"),
        ("fec0::1", "site-local"),
    ],
)
def test_it_names_the_range_it_refuses(address: str, words: str) -> None:
    assert words in (refusal_reason(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize(
    ("address", "allow"),
    [
        ("10.1.2.3", ["10.0.0.0/8"]),
        ("10.1.2.3", ["10.1.2.3"]),
        ("10.1.2.3", ["10.1.2.99/8"]),  # host bits are forgiven
        ("::ffff:10.1.2.3", ["10.0.0.0/8"]),
        ("fd00::5", ["fd00::/64"]),
        ("127.0.0.1", ["  127.0.0.1 ", ""]),
    ],
)
def test_it_allows_listed_addresses(address: str, allow: list[str]) -> None:
    ip = ipaddress.ip_address(address)
    assert address_allowed(ip, allow)
    assert not address_allowed(ip, ["192.168.0.0/16", "files.internal.example"])


def test_it_parses_host_names_case_insensitively() -> None:
    parsed = parse_allow_list(["Files.Internal.Example.", "10.0.0.0/8"])
    assert parsed.hosts == frozenset({"files.internal.example"})
    assert parsed.allows_host("FILES.internal.example")
    assert not parsed.allows_host("evil.files.internal.example")


@pytest.mark.parametrize("item", ["10.0.0.0/33", "http://files.example", "files example", "10.0.0.0/8/8"])
def test_it_rejects_malformed_allow_entries(item: str) -> None:
    with pytest.raises(ValueError, match="KIMIPROXY_FETCH_ALLOW"):
        parse_allow_list([item])


# --------------------------------------------------------------------------------------------------
# Refusals happen before anything reaches the transport


@pytest.mark.parametrize("address", FORBIDDEN)
async def test_it_refuses_a_host_resolving_to_a_forbidden_address_before_sending(address: str) -> None:
    recorder = Recorder()
    with pytest.raises(FetchRefused, match=f"resolves to {ipaddress.ip_address(address)}, "):
        await fetch("http://evil.example/cat.png", recorder, {"evil.example": [address]})
    assert recorder.requests == []


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "[::1]", "[::ffff:10.0.0.1]", "[fd00::1]"])
async def test_it_refuses_literal_forbidden_addresses(address: str) -> None:
    recorder = Recorder()
    with pytest.raises(FetchRefused):
        await fetch(f"http://{address}/latest/meta-data/", recorder)
    assert recorder.requests == []


@pytest.mark.parametrize("records", [[PUBLIC_V4, "10.0.0.5"], ["10.0.0.5", PUBLIC_V4], [PUBLIC_V6, "::1", PUBLIC_V4]])
async def test_it_refuses_when_any_record_is_forbidden(records: list[str]) -> None:
    recorder = Recorder()
    with pytest.raises(FetchRefused):
        await fetch("https://mixed.example/x.png", recorder, {"mixed.example": records})
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://files.example/x", "gopher://files.example:70/_x", "data:,hi", "/relative/x.png"],
)
async def test_it_refuses_other_schemes(url: str) -> None:
    recorder = Recorder()
    with pytest.raises(FetchRefused, match="only http and https"):
        await fetch(url, recorder, {"files.example": [PUBLIC_V4]})
    assert recorder.requests == []


async def test_it_refuses_a_redirect_to_a_forbidden_address() -> None:
    recorder = Recorder({"/start": redirect("http://metadata.example/latest/meta-data/")})
    table = {"files.example": [PUBLIC_V4], "metadata.example": ["169.254.169.254"]}
    with pytest.raises(FetchRefused, match="169.254.169.254"):
        await fetch("https://files.example/start", recorder, table)
    assert recorder.hosts == [PUBLIC_V4]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://127.0.0.1:8000/admin", "//[::1]/x"])
async def test_it_refuses_redirects_out_of_policy(location: str) -> None:
    recorder = Recorder({"/start": redirect(location, 301)})
    with pytest.raises(FetchRefused):
        await fetch("http://files.example/start", recorder, {"files.example": [PUBLIC_V4]})
    assert len(recorder.requests) == 1


async def test_it_stops_after_max_redirects() -> None:
    recorder = Recorder({"/loop": redirect("/loop", 307)})
    with pytest.raises(FetchRefused, match="more than 2 redirects"):
        await fetch("http://files.example/loop", recorder, {"files.example": [PUBLIC_V4]}, max_redirects=2)
    assert len(recorder.requests) == 3


async def test_it_follows_redirects_within_the_limit_and_checks_each_hop() -> None:
    recorder = Recorder(
        {
            "/a": redirect("http://cdn.example/b"),
            "/b": redirect("/c/photo.jpg?sig=secret", 303),
            "/c/photo.jpg": lambda request: streamed(b"jpeg", headers={"Content-Type": "image/jpeg"}),
        }
    )
    table = {"files.example": [PUBLIC_V4], "cdn.example": [PUBLIC_V6]}
    fetched = await fetch("http://files.example/a", recorder, table, max_redirects=2)
    assert fetched == FetchedFile(
        data=b"jpeg",
        content_type="image/jpeg",
        filename="photo.jpg",
        final_url="http://cdn.example/c/photo.jpg?sig=secret",
    )
    assert recorder.hosts == [PUBLIC_V4, PUBLIC_V6, PUBLIC_V6]
    assert [r.headers["host"] for r in recorder.requests] == ["files.example", "cdn.example", "cdn.example"]


# --------------------------------------------------------------------------------------------------
# The allow-list


async def test_it_allows_a_listed_host_name_whatever_it_resolves_to() -> None:
    recorder = Recorder()
    table = {"files.internal.example": ["10.1.2.3", "127.0.0.1"]}
    fetched = await fetch("http://FILES.internal.example/r.txt", recorder, table, allow=["files.internal.example"])
    assert fetched.data == b"hello"
    assert recorder.hosts == ["10.1.2.3"]


async def test_it_allows_a_listed_network_but_nothing_beside_it() -> None:
    table = {"a.internal.example": ["10.1.2.3"], "b.internal.example": ["10.1.2.3", "192.168.0.1"]}
    recorder = Recorder()
    assert (await fetch("http://a.internal.example/", recorder, table, allow=["10.0.0.0/8"])).data == b"hello"
    with pytest.raises(FetchRefused, match="192.168.0.1"):
        await fetch("http://b.internal.example/", recorder, table, allow=["10.0.0.0/8"])
    assert recorder.hosts == ["10.1.2.3"]


# --------------------------------------------------------------------------------------------------
# The request that is sent: pinned address, original Host and TLS name, nothing of ours


async def test_it_pins_https_to_the_checked_address_with_the_original_host_and_sni() -> None:
    recorder = Recorder()
    await fetch("https://user:pw@Files.Example:8443/a%20b.png#frag", recorder, {"files.example": [PUBLIC_V4]})
    (request,) = recorder.requests
    assert str(request.url) == f"https://{PUBLIC_V4}:8443/a%20b.png"
    assert request.headers["host"] == "files.example:8443"
    assert request.extensions["sni_hostname"] == "files.example"
    assert request.headers["user-agent"] == "kimiproxy"
    assert {"authorization", "cookie", "proxy-authorization"}.isdisjoint(request.headers.keys())


async def test_it_pins_ipv6_and_sends_no_sni_for_plain_http() -> None:
    recorder = Recorder()
    await fetch("http://files.example/x", recorder, {"files.example": [PUBLIC_V6]})
    (request,) = recorder.requests
    assert request.url.host == PUBLIC_V6
    assert request.headers["host"] == "files.example"
    assert "sni_hostname" not in request.extensions


async def test_it_tries_the_next_checked_address_when_one_does_not_connect() -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.host)
        if request.url.host == PUBLIC_V6:
            raise httpx.ConnectError("unreachable", request=request)
        return streamed(b"ok")

    fetched = await fetch_with(
        "http://files.example/",
        max_bytes=10,
        timeout=5,
        allow=[],
        max_redirects=0,
        resolver=resolver_for({"files.example": [PUBLIC_V6, PUBLIC_V4]}),
        transport=httpx.MockTransport(handler),
    )
    assert fetched.data == b"ok"
    assert attempts == [PUBLIC_V6, PUBLIC_V4]


# --------------------------------------------------------------------------------------------------
# Failures


async def test_it_fails_on_a_declared_length_over_the_cap_without_reading() -> None:
    pulled: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"x" * 600, b"x" * 600):
            pulled.append(chunk)
            yield chunk

    recorder = Recorder({"/big": lambda r: httpx.Response(200, headers={"Content-Length": "1200"}, content=body())})
    with pytest.raises(FetchFailed, match="sends 1200 bytes, more than the limit of 1000"):
        await fetch("http://files.example/big", recorder, {"files.example": [PUBLIC_V4]})
    assert pulled == []


async def test_it_stops_reading_a_stream_as_soon_as_it_passes_the_cap() -> None:
    pulled: list[bytes] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            pulled.append(b"x" * 400)
            yield b"x" * 400

    recorder = Recorder({"/big": lambda r: httpx.Response(200, content=endless())})
    with pytest.raises(FetchFailed, match="more than the limit of 1000 bytes"):
        await fetch("http://files.example/big", recorder, {"files.example": [PUBLIC_V4]})
    assert len(pulled) == 3


async def test_it_accepts_a_body_of_exactly_the_cap() -> None:
    recorder = Recorder({"/exact": lambda r: streamed(b"x" * 1000)})
    fetched = await fetch("http://files.example/exact", recorder, {"files.example": [PUBLIC_V4]})
    assert len(fetched.data) == 1000


async def test_it_fails_when_the_whole_fetch_outlasts_the_timeout() -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(FetchFailed, match="took longer than 0.05 s"):
        await fetch_with(
            "http://files.example/slow",
            max_bytes=10,
            timeout=0.05,
            allow=[],
            max_redirects=0,
            resolver=resolver_for({"files.example": [PUBLIC_V4]}),
            transport=httpx.MockTransport(stall),
        )


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(503), "HTTP 503"),
        (httpx.Response(302), "without a usable redirect"),
        (streamed(b"\x1f\x8b", headers={"Content-Encoding": "gzip"}), "gzip-encoded"),
    ],
)
async def test_it_fails_on_unusable_responses(response: httpx.Response, words: str) -> None:
    recorder = Recorder({"/x": lambda r: response})
    with pytest.raises(FetchFailed, match=words):
        await fetch("http://files.example/x", recorder, {"files.example": [PUBLIC_V4]})


async def test_it_fails_when_the_host_does_not_resolve() -> None:
    recorder = Recorder()
    with pytest.raises(FetchFailed, match="could not resolve nowhere.example"):
        await fetch("http://nowhere.example/x", recorder, {})
    assert recorder.requests == []


async def test_the_default_resolver_returns_literal_addresses_without_a_lookup() -> None:
    assert await resolve_host("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert await resolve_host("::1", 80) == [ipaddress.ip_address("::1")]


# --------------------------------------------------------------------------------------------------
# What the response says about the file


async def test_it_reports_media_type_and_disposition_filename() -> None:
    headers = {"Content-Type": "Image/PNG; charset=binary", "Content-Disposition": 'attachment; filename="cat.png"'}
    recorder = Recorder({"/download": lambda r: streamed(b"png", headers=headers)})
    fetched = await fetch("http://files.example/download?id=7", recorder, {"files.example": [PUBLIC_V4]})
    assert (fetched.content_type, fetched.filename) == ("image/png", "cat.png")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="cat.png"', "cat.png"),
        ("attachment; filename=cat.png", "cat.png"),
        ('inline; filename="a \\"quoted\\" name.txt"', 'a "quoted" name.txt'),
        ("attachment; filename*=UTF-8''na%C3%AFve%20file.pdf", "naïve file.pdf"),
        ("attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%E2%82%AC.pdf", "€.pdf"),
        ("attachment; FILENAME*=iso-8859-1'en'%A3%20rates.txt; filename=x.txt", "£ rates.txt"),
        ("attachment; filename*=bogus-charset''x.pdf; filename=\"plain.pdf\"", "plain.pdf"),
        ('attachment; name="field"; filename="semi;colon.txt"', "semi;colon.txt"),
        ("attachment", None),
    ],
)
def test_it_parses_content_disposition(header: str, expected: str | None) -> None:
    assert disposition_filename(header) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("..", None),
    ],
)
def test_it_keeps_only_a_safe_last_path_component(name: str, expected: str | None) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://files.example/dir/r%C3%A9sum%C3%A9.pdf?x=1", "résumé.pdf"), ("http://files.example/dir/", None)],
)
async def test_it_falls_back_to_the_url_path_for_the_filename(url: str, expected: str | None) -> None:
    fetched = await fetch(url, Recorder(), {"files.example": [PUBLIC_V4]})
    assert fetched.filename == expected
