"""SSRF at the API: an image URL on the cloud metadata address is refused with a 400 before any connection.

The fetcher itself is covered in tests/unit/test_netguard.py and tests/integration/test_netguard_fetch.py;
this proves the API path uses it. A host name is made to resolve to 169.254.169.254 by answering
``socket.getaddrinfo`` for it (the gateway's resolver calls it through the event loop), so no DNS is used.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway.models import RequestLog
from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import pool_account

METADATA = "169.254.169.254"
ALIAS = "metadata.internal.test"


@pytest.fixture
def connects(monkeypatch) -> list[object]:
    """Every address any socket in this process tries to connect to during the test."""
    seen: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        seen.append(address)
        return real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        seen.append(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


@pytest.fixture
def alias_resolves_to_metadata(monkeypatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == ALIAS:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (METADATA, port or 80))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("host", [METADATA, ALIAS])
def test_it_refuses_an_image_url_on_the_metadata_address_before_connecting(
    e2e, connects, alias_resolves_to_metadata, host
):
    pool_account(e2e.fake, "only")
    _, key = make_api_key()
    image = {"type": "image_url", "image_url": {"url": f"http://{host}/latest/meta-data/iam/cat.png"}}
    body = {"model": "kimi", "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, image]}]}

    response = httpx.post(
        f"{e2e.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith("messages[0].content[1]")
    assert METADATA in error["message"]  # refused for the address it is, not because a connect failed
    assert not [a for a in connects if isinstance(a, tuple) and str(a[0]).startswith("169.254.")]
    assert e2e.fake.count("chat") == 0 and e2e.fake.count("upload") == 0
    row = wait_for_final_log(response.headers["x-request-id"])
    assert (row.status_code, row.account_id) == (400, None)
    assert RequestLog.objects.count() == 1
