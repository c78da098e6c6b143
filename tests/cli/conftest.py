"""The real Claude Code and Codex CLIs, installed from npm into a cache outside the repo, run against the
live gateway (tests/cli/README.md).

Without node/npm (or when the install fails) the tests skip, unless ``KIMIPROXY_REQUIRE_CLIS=1`` (set by
.ci/run) makes that a failure. They run in the SQLite pass only: the PostgreSQL pass of CI skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.factories import make_api_key
from tests.integration.api.helpers import pool_account

CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.332", "claude")
CODEX = ("@openai/codex", "0.171.0", "codex")
CLI_TIMEOUT = 120  # seconds for one CLI run; a hang (e.g. a retry loop) fails instead of blocking CI
CACHE = Path(os.environ.get("KIMIPROXY_CLI_CACHE") or Path.home() / ".cache" / "kimiproxy-cli")


def _unavailable(reason: str) -> None:
    if os.environ.get("KIMIPROXY_REQUIRE_CLIS") == "1":
        pytest.fail(f"KIMIPROXY_REQUIRE_CLIS=1 but {reason}")
    pytest.skip(reason)


def _cli_version(binary: Path) -> str:
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return ""
    return result.stdout.strip()


def install_cli(package: str, version: str, command: str) -> Path:
    """``<cache>/<package>@<version>/node_modules/.bin/<command>``, installed by npm on first use.

    The install goes to a temporary folder renamed into place, so an interrupted one is never reused."""
    home = CACHE / f"{package.replace('/', '_')}@{version}"
    binary = home / "node_modules" / ".bin" / command
    if binary.exists() and version in _cli_version(binary):
        return binary
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable(f"node and npm are needed to install {package}@{version}")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{command}-", dir=CACHE))
    result = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(staging),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"{package}@{version}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        _unavailable(f"npm could not install {package}@{version}: {result.stderr.strip()[-400:]}")
    staged = staging / "node_modules" / ".bin" / command
    if version not in _cli_version(staged):
        # Claude Code's postinstall copies the native binary over a placeholder; npm set to skip install
        # scripts leaves the placeholder, so run that step here.
        script = staging / "node_modules" / package / "install.cjs"
        if script.exists():
            subprocess.run(["node", str(script)], cwd=script.parent, capture_output=True, timeout=120)
    if version not in _cli_version(staged):
        shutil.rmtree(staging, ignore_errors=True)
        _unavailable(f"{package}@{version} installed but `{command} --version` does not answer {version}")
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    return binary


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released): a proxy there refuses at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path) -> dict[str, str]:
    """Only what a CLI needs: no variable of the developer's (no real API key) reaches it."""
    proxy = f"http://127.0.0.1:{closed_loopback_port()}"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> CliRun:
    try:
        result = subprocess.run(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{Path(argv[0]).name} did not finish in {CLI_TIMEOUT}s: {exc.stderr!r:.2000}") from None
    return CliRun(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def _cli_pass() -> None:
    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        pytest.skip("the real-CLI tests run in the SQLite pass of the suite (tests/cli/README.md)")


@pytest.fixture(scope="session")
def claude_binary(_cli_pass: None) -> Path:
    return install_cli(*CLAUDE_CODE)


@pytest.fixture(scope="session")
def codex_binary(_cli_pass: None) -> Path:
    return install_cli(*CODEX)


@dataclass
class Gateway:
    """The live gateway with one pool account on the fake, and a key for the CLI."""

    url: str
    fake: Any
    key: str


@pytest.fixture
def gateway(e2e: Any) -> Gateway:
    pool_account(e2e.fake, "cli-0")
    _, raw = make_api_key(name="cli")
    return Gateway(url=e2e.url, fake=e2e.fake, key=raw)


@pytest.fixture
def claude(claude_binary: Path, gateway: Gateway, tmp_path: Path) -> Iterator[Any]:
    """``claude(prompt, *flags)`` runs ``claude -p <prompt> --output-format json`` against the gateway."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = base_env(home) | {
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_AUTH_TOKEN": gateway.key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }

    def run(prompt: str, *flags: str) -> CliRun:
        return run_cli([str(claude_binary), "-p", prompt, "--output-format", "json", *flags], env, work)

    yield run


CODEX_CONFIG = """\
model = "kimi"
model_provider = "kimiproxy"

[model_providers.kimiproxy]
name = "kimiproxy"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "KIMIPROXY_API_KEY"
"""


@pytest.fixture
def codex(codex_binary: Path, gateway: Gateway, tmp_path: Path) -> Iterator[Any]:
    """``codex(prompt)`` runs ``codex exec`` against the gateway; ``.stdout`` is the final message (also in
    ``last_message`` after the run)."""
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(url=gateway.url))
    env = base_env(home) | {"CODEX_HOME": str(codex_home), "KIMIPROXY_API_KEY": gateway.key}
    last_message = tmp_path / "last-message.txt"

    def run(prompt: str) -> CliRun:
        argv = [str(codex_binary), "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access"]
        argv += ["--color", "never", "--output-last-message", str(last_message), prompt]
        outcome = run_cli(argv, env, work)
        run.last_message = last_message.read_text() if last_message.exists() else None  # type: ignore[attr-defined]
        return outcome

    yield run
