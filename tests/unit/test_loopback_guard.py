import socket

import pytest

from tests.conftest import NonLoopbackConnection


@pytest.mark.parametrize(
    "address", [("10.0.0.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53), ("::ffff:10.0.0.1", 80)]
)
def test_it_refuses_non_loopback_connections(address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(NonLoopbackConnection):
        sock.connect(address)


def test_it_allows_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
