"""Shared test set-up: settings for tests, and a guard that fails any non-loopback connection.

No test reaches the Internet (zulip's ``block_internet()`` idea): every socket connect to an address
outside 127.0.0.0/8 and ::1 raises, so a test that would leak traffic fails loudly instead.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

pytest_plugins = ["tests.fixtures_kimi", "tests.fixtures_gateway"]


class NonLoopbackConnection(RuntimeError):
    """A test tried to open a connection to an address that is not this machine's loopback."""


def _check_address(address: object) -> None:
    if not isinstance(address, tuple):  # unix sockets (the local Postgres socket) are fine
        return
    host = str(address[0]).split("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise NonLoopbackConnection(f"connect to unresolved host {host!r} in a test") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise NonLoopbackConnection(f"connect to non-loopback address {host} in a test")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _reset_process_state() -> None:
    from django.core.cache import cache

    from gateway import lifecycle

    lifecycle.reset_for_tests()
    cache.clear()  # the model catalogue's copies (C.7): each test starts without one
