"""Real server processes for reliability tests: the gateway under uvicorn, and the fake Kimi server.

Each process gets an explicit environment (nothing inherited but PATH/HOME), listens on a socket the
test bound to 127.0.0.1:0 and passed in (``uvicorn --fd``), and is always killed by ``stop()``. Output
goes to a temporary file that ``output()`` returns for failure messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def database_url_of_tests() -> str:
    """A DATABASE_URL for the database this test run uses (the pytest-django test database)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    return postgres_url(db["NAME"])


def postgres_url(name: str) -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


def gateway_env(*, database_url: str, kimi_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    """The environment of a production-like gateway process (DEBUG off) for these tests."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "kimiproxy.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "KIMIPROXY_TOKEN_KEY": ",".join(settings.KIMIPROXY_TOKEN_KEYS),  # the rows the test wrote must decrypt
        "KIMIPROXY_SECURE_COOKIES": "false",
        "DATABASE_URL": database_url,
        "KIMI_BASE_URL": kimi_url,
        "KIMI_AUTH_URL": kimi_url,
        "KIMI_LEGACY_BASE_URL": kimi_url,
        "KIMI_AI_BASE_URL": kimi_url,  # one fake port answers both deployments' paths
        "KIMI_AI_AUTH_URL": kimi_url,
        "KIMIPROXY_DATA_DIR": str(ROOT / "data" / "test"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class ServerProcess:
    """One server process on its own loopback socket."""

    def __init__(self, argv: list[str], *, env: dict[str, str], name: str, pass_socket: bool = True) -> None:
        """``{fd}`` in ``argv`` and ``env`` becomes the listening socket's descriptor, ``{port}`` its port. Without
        ``pass_socket`` the server binds the port itself (a small race, only for the fake's command)."""
        self.name = name
        sock = listening_socket()
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"kimiproxy-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        fill = lambda text: text.replace("{fd}", str(sock.fileno())).replace("{port}", str(self.port))  # noqa: E731
        argv = [fill(a) for a in argv]
        env = {name: fill(value) for name, value in env.items()}
        if not pass_socket:
            sock.close()
        self.proc = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),) if pass_socket else (),
        )
        # The child has its own copy; ours must go, or connections would queue here after it stops listening.
        sock.close()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def wait_ready(self, path: str = "/healthz", timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(self.url + path, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=timeout, what=f"{self.name} to answer {path}", interval=0.1)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Terminate (then kill) the process; always safe to call."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def start_gateway(env: dict[str, str], *, name: str = "gateway", extra_args: tuple[str, ...] = ()) -> ServerProcess:
    """The gateway under uvicorn with the default lifespan ("auto"), as production runs it."""
    argv = [PYTHON, "-m", "uvicorn", "kimiproxy.asgi:application", "--fd", "{fd}", "--no-access-log"]
    return ServerProcess([*argv, *extra_args], env=env, name=name)


def start_fake_kimi(env: dict[str, str]) -> ServerProcess:
    """``manage.py fake_kimi`` in its own process, driven over its ``/_fake/`` HTTP API."""
    argv = [PYTHON, "manage.py", "fake_kimi", "--port", "{port}"]
    return ServerProcess(argv, env=env, name="fake-kimi", pass_socket=False)


@contextlib.contextmanager
def running(*processes: ServerProcess) -> Iterator[None]:
    """Stop every process on the way out, whatever happened."""
    try:
        yield
    finally:
        for process in processes:
            process.stop()
