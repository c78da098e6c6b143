"""The SSRF policy for client-supplied URLs: which hosts and addresses the gateway may fetch from.

Clients put image/file URLs in chat messages and the gateway downloads them (``gateway/files/fetch.py``),
so a URL must never make the gateway reach a service inside the operator's network. A URL is refused
(``FetchRefused``) unless its scheme is http or https and EVERY address its host resolves to is publicly
routable. One bad record among good ones refuses the whole host: a resolver that returns
``[public, 10.0.0.5]`` would otherwise let an attacker pick our target by racing the records.

Operators open holes with ``KIMIPROXY_FETCH_ALLOW``: CIDRs and single addresses allow those addresses;
host names (exact, case-insensitive) skip the address check for that host altogether.

The checked addresses are what the fetcher connects to (``pinned_request``): there is no second DNS
lookup, so DNS rebinding cannot swap a private address in after the check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host name as IDNA/ASCII, port) -> every address the host resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

ALLOWED_SCHEMES = ("http", "https")
USER_AGENT = "kimiproxy"


class FetchRefused(Exception):
    """Our policy forbids this fetch (scheme, address range, too many redirects); nothing was sent there."""


class FetchFailed(Exception):
    """The fetch was allowed but did not work: DNS or network error, timeout, HTTP status >= 400, too big."""


# --------------------------------------------------------------------------------------------------
# The allow-list


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Parsed ``KIMIPROXY_FETCH_ALLOW``: networks whose addresses are allowed, and trusted host names."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        return _normalise_host(host) in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)  # "10.0.0.0/8" also allows ::ffff:10.1.2.3
        return any(candidate in network for candidate in candidates for network in self.networks)


_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def parse_allow_list(items: Sequence[str]) -> AllowList:
    """Parse CIDRs (``10.0.0.0/8``), single addresses and host names; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in items:
        item = _normalise_host(raw)
        if not item:
            continue  # env.list("...") turns an empty variable into [""]
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(item):
            raise ValueError(f"KIMIPROXY_FETCH_ALLOW entry {raw!r} is not a CIDR, an IP address or an ASCII host name")
        hosts.add(item)
    return AllowList(networks=tuple(networks), hosts=frozenset(hosts))


# --------------------------------------------------------------------------------------------------
# Address ranges

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address

# Checked in order; the first match names the refusal. ``is_global`` at the end catches what the named
# checks miss (documentation, benchmarking, 192.0.0.0/24, teredo's 2001::/32 ...).
_RANGE_CHECKS: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda ip: ip.is_unspecified),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local (cloud metadata services live here)", lambda ip: ip.is_link_local),
    ("shared address space (100.64.0.0/10)", lambda ip: ip in _SHARED_ADDRESS_SPACE),
    ("unique-local (fc00::/7)", lambda ip: ip in _UNIQUE_LOCAL),
    ("site-local", lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    ("private", lambda ip: ip.is_private),
    ("multicast", lambda ip: ip.is_multicast),
    ("reserved", lambda ip: ip.is_reserved),
    ("non-public", lambda ip: not ip.is_global),
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a 6to4, teredo or NAT64 address leads to (a gateway would forward to them)."""
    embedded: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        embedded.append(ip.sixtofour)
    if ip.teredo is not None:
        embedded.append(ip.teredo[1])  # (server, client); the client is where packets end up
    if ip in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return embedded


def refusal_reason(ip: IPAddress) -> str | None:
    """Why fetching from ``ip`` is forbidden (ignoring the allow-list), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is the IPv4 host a.b.c.d on a dual-stack socket: judge that host.
            reason = refusal_reason(ip.ipv4_mapped)
            return f"IPv4-mapped {reason}" if reason else None
        for inner in _embedded_ipv4(ip):
            reason = refusal_reason(inner)
            if reason:
                return f"{reason} (embedded {inner})"
    for label, matches in _RANGE_CHECKS:
        if matches(ip):
            return label
    return None


def address_allowed(ip: IPAddress, allow: Sequence[str]) -> bool:
    """True when the gateway may connect to ``ip``: it is public, or the allow-list names it."""
    return parse_allow_list(allow).allows_address(ip) or refusal_reason(ip) is None


# --------------------------------------------------------------------------------------------------
# Resolving and checking one URL


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: dict[IPAddress, None] = {}  # a dict keeps the order a set would lose
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(addresses)


def describe(url: httpx.URL) -> str:
    """``scheme://host[:port]`` of a URL, for messages: the path and query may hold a client's secret."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}" if url.host else url.scheme + ":"


async def checked_addresses(url: httpx.URL, *, allow: AllowList, resolver: Resolver) -> list[IPAddress]:
    """The addresses the fetcher may connect to for ``url``; FetchRefused if policy forbids any of them."""
    if url.scheme not in ALLOWED_SCHEMES:
        raise FetchRefused(f"only http and https URLs can be fetched, not {url.scheme or 'a relative'} URLs")
    if not url.host:
        raise FetchRefused("the URL has no host name")
    host = url.raw_host.decode("ascii")
    try:
        addresses: Sequence[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await resolver(host, url.port or (443 if url.scheme == "https" else 80))
        except (OSError, UnicodeError) as exc:
            raise FetchFailed(f"could not resolve {url.host}: {exc}") from exc
    if not addresses:
        raise FetchFailed(f"{url.host} resolves to no address")
    if allow.allows_host(url.host) or allow.allows_host(host):
        return list(addresses)
    for ip in addresses:
        reason = None if allow.allows_address(ip) else refusal_reason(ip)
        if reason:
            raise FetchRefused(
                f"refusing to fetch {describe(url)}: it resolves to {ip}, which is in a forbidden range ({reason})"
                " (an operator can allow it with KIMIPROXY_FETCH_ALLOW)"
            )
    return list(addresses)


def pinned_request(url: httpx.URL, ip: IPAddress) -> httpx.Request:
    """A GET for ``url`` that connects to ``ip``; Host header, SNI and certificate name stay ``url``'s host.

    httpcore takes the TLS server name from the ``sni_hostname`` extension and verifies the certificate
    against it, so rewriting the URL to the address costs no certificate check. Credentials in the URL
    are dropped: the client's ``user:pass@`` is not for us to forward, and no cookie jar is involved.
    """
    target = url.copy_with(host=str(ip), username=None, password=None, fragment=None)
    headers = {
        "Host": url.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        # Raw bytes only: decompressing would let a tiny gzip body blow past the size cap in memory.
        "Accept-Encoding": "identity",
    }
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return httpx.Request("GET", target, headers=headers, extensions=extensions)
