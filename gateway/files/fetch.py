"""Download a client-supplied file/image URL under the SSRF policy of ``gateway/files/netguard.py``.

Every hop (the URL and each redirect) is checked before anything is sent; the request then goes to the
address that was checked. Redirects are followed by hand, the body is capped while it streams, and one
deadline covers the whole fetch. Usage::

    fetched = await fetch_url(url, max_bytes=..., timeout=settings.KIMIPROXY_FETCH_TIMEOUT,
                              allow=settings.KIMIPROXY_FETCH_ALLOW,
                              max_redirects=settings.KIMIPROXY_FETCH_MAX_REDIRECTS)

The transport is used directly rather than through ``httpx.AsyncClient``: a client would add proxies from
the environment (which would do the DNS lookup we just pinned), a cookie jar and auth from the URL.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import re
from collections.abc import Sequence
from urllib.parse import unquote

import httpx

from gateway.files.netguard import (
    AllowList,
    FetchFailed,
    FetchRefused,
    IPAddress,
    Resolver,
    checked_addresses,
    describe,
    parse_allow_list,
    pinned_request,
    resolve_host,
)

__all__ = ["FetchFailed", "FetchRefused", "FetchedFile", "fetch_url"]


@dataclasses.dataclass(frozen=True)
class FetchedFile:
    """A downloaded body with what the server said about it."""

    data: bytes
    content_type: str | None  # from the response header, parameters stripped
    filename: str | None  # from Content-Disposition (filename* / filename) or the URL path's last segment
    final_url: str  # after redirects


async def fetch_url(
    url: str, *, max_bytes: int, timeout: float, allow: Sequence[str], max_redirects: int
) -> FetchedFile:
    """Download ``url``: FetchRefused when policy forbids it, FetchFailed when it does not work."""
    async with httpx.AsyncHTTPTransport(retries=0) as transport:
        return await fetch_with(
            url,
            max_bytes=max_bytes,
            timeout=timeout,
            allow=allow,
            max_redirects=max_redirects,
            resolver=resolve_host,
            transport=transport,
        )


async def fetch_with(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow: Sequence[str],
    max_redirects: int,
    resolver: Resolver,
    transport: httpx.AsyncBaseTransport,
) -> FetchedFile:
    """``fetch_url`` with its resolver and transport injected (tests map names and count requests here)."""
    allow_list = parse_allow_list(allow)
    try:
        start = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchRefused(f"not a valid URL: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            return await _follow(start, max_bytes, max_redirects, allow_list, resolver, transport)
    except TimeoutError:
        raise FetchFailed(f"fetching {describe(start)} took longer than {timeout:g} s") from None


async def _follow(
    url: httpx.URL,
    max_bytes: int,
    max_redirects: int,
    allow: AllowList,
    resolver: Resolver,
    transport: httpx.AsyncBaseTransport,
) -> FetchedFile:
    for _hop in range(max_redirects + 1):
        addresses = await checked_addresses(url, allow=allow, resolver=resolver)
        response = await _send(transport, url, addresses)
        try:
            if response.has_redirect_location:
                url = _redirect_target(url, response.headers["location"])
                continue
            _raise_for_status(url, response)
            data = await _read_capped(url, response, max_bytes)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"reading from {describe(url)} failed: {exc!r}") from exc
        finally:
            await response.aclose()
        return FetchedFile(
            data=data,
            content_type=_media_type(response.headers.get("content-type")),
            filename=_filename(response.headers.get("content-disposition"), url),
            final_url=str(url),
        )
    raise FetchRefused(f"more than {max_redirects} redirects; the last one pointed to {describe(url)}")


async def _send(transport: httpx.AsyncBaseTransport, url: httpx.URL, addresses: list[IPAddress]) -> httpx.Response:
    """Send to the first checked address that accepts a connection, as a browser tries records in turn."""
    failure: httpx.HTTPError | None = None
    for ip in addresses:
        try:
            return await transport.handle_async_request(pinned_request(url, ip))
        except httpx.ConnectError as exc:
            failure = exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {describe(url)} from {ip} failed: {exc!r}") from exc
    raise FetchFailed(f"could not connect to {describe(url)}: {failure!r}") from failure


def _redirect_target(url: httpx.URL, location: str) -> httpx.URL:
    try:
        return url.join(location.strip())
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"{describe(url)} redirected to an invalid URL: {exc}") from None


def _raise_for_status(url: httpx.URL, response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise FetchFailed(f"{describe(url)} answered HTTP {response.status_code}")
    if not 200 <= response.status_code < 300:  # 304, or a 3xx without a Location header
        raise FetchFailed(f"{describe(url)} answered HTTP {response.status_code} without a usable redirect")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # We asked for identity; decoding a compressed body could outgrow max_bytes in memory.
        raise FetchFailed(f"{describe(url)} sent a {encoding}-encoded body although we asked for none")


async def _read_capped(url: httpx.URL, response: httpx.Response, max_bytes: int) -> bytes:
    """The body, or FetchFailed as soon as it is known to be longer than ``max_bytes``."""
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(f"{describe(url)} sends {declared} bytes, more than the limit of {max_bytes}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise FetchFailed(f"{describe(url)} sent more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------------
# What the response says about the file (pure)


def _media_type(header: str | None) -> str | None:
    media_type = (header or "").split(";", 1)[0].strip().lower()
    return media_type or None


# One `; name=value` parameter; the value is a quoted-string (with \-escapes) or a token.
_PARAMETER = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def disposition_filename(header: str) -> str | None:
    """The file name in a Content-Disposition header, preferring RFC 6266 ``filename*`` to ``filename``."""
    params: dict[str, str] = {}
    for match in _PARAMETER.finditer(header):
        value = match[2].strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(match[1].lower(), value)
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")  # charset'language'percent-encoded
        _language, quote, encoded = rest.partition("'")
        if quote:
            try:
                codecs.lookup(charset)  # unquote() skips decoding when nothing is escaped
                return unquote(encoded, encoding=charset, errors="strict")
            except (LookupError, UnicodeDecodeError):
                pass  # a broken filename* falls back to filename, as RFC 6266 section 4.3 suggests
    return params.get("filename")


def _filename(disposition: str | None, url: httpx.URL) -> str | None:
    name = disposition_filename(disposition) if disposition else None
    if not name:
        name = unquote(url.path.rsplit("/", 1)[-1])
    return safe_filename(name)


def safe_filename(name: str) -> str | None:
    """The last path component of ``name`` without control characters; None when nothing usable is left."""
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return None if name in ("", ".", "..") else name
