"""Run the fake on a real loopback socket: a ``uvicorn.Server`` in a thread (httpx's own test pattern)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from gateway.kimi.fake.app import FakeKimiApp
from gateway.kimi.fake.control import FakeKimi

_CUT_MESSAGE = "ASGI callable returned without completing response."


class _IntentionalCutFilter(logging.Filter):
    """The ``cut`` fault closes streams on purpose; uvicorn would log each one as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_MESSAGE


def _listening_socket(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle) between its writes.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class FakeKimiServer(uvicorn.Server):
    """Serves ``fake`` on ``host:port`` (the kimi.com deployment) and ``host:ai_port`` (kimi.ai; C.5),
    port 0 meaning a free one. Both ports answer every path; the port only says which deployment a call
    reached (``Call.deployment``). ``start()`` returns once it accepts connections and sets ``fake.url``
    and ``fake.url_ai``; ``stop()`` asks it to exit and joins the thread."""

    def __init__(self, fake: FakeKimi, host: str = "127.0.0.1", port: int = 0, ai_port: int = 0) -> None:
        config = uvicorn.Config(
            FakeKimiApp(fake),
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=1,
            http="h11",
            loop="asyncio",  # run in a thread by tests: the stdlib loop closes cleanly there
        )
        super().__init__(config)
        self.fake = fake
        self.sock = _listening_socket(host, port)
        self.sock_ai = _listening_socket(host, ai_port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.ai_port: int = self.sock_ai.getsockname()[1]
        fake.deployment_ports = {self.port: "kimi.com", self.ai_port: "kimi.ai"}
        self.thread: threading.Thread | None = None
        self._filter = _IntentionalCutFilter()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url_ai(self) -> str:
        return f"http://{self.host}:{self.ai_port}"

    def _set_urls(self) -> None:
        self.fake.url, self.fake.url_ai = self.url, self.url_ai

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (uvicorn captures signals only in the main thread)."""
        self._set_urls()
        self.run(sockets=[self.sock, self.sock_ai])

    def start(self, timeout: float = 10.0) -> None:
        logging.getLogger("uvicorn.error").addFilter(self._filter)
        self._set_urls()
        self.thread = threading.Thread(target=self.run, kwargs={"sockets": [self.sock, self.sock_ai]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Kimi server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()
        self.sock_ai.close()
        logging.getLogger("uvicorn.error").removeFilter(self._filter)
