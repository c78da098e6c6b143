"""Shared set-up for the API tests: pool accounts minted on the fake, a key, an openai client."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.factories import make_account, make_api_key


def pool_account(fake: Any, name: str, *, protocol: str = "connect", paid: bool = False, **limits: Any) -> Any:
    """A fake Kimi account and the matching pool account (same name, the fake's refresh token)."""
    minted = fake.mint_account(name, protocol=protocol, paid=paid)
    return make_account(name=name, token=minted.refresh_token, protocol=protocol, **limits)


def client_for(url: str, key: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20, **kwargs)


def setup_pool(
    e2e: Any, *, protocol: str = "connect", accounts: int = 1, **key_kwargs: Any
) -> tuple[openai.OpenAI, Any]:
    for i in range(accounts):
        pool_account(e2e.fake, f"{protocol}-{i}", protocol=protocol)
    key, raw = make_api_key(**key_kwargs)
    return client_for(e2e.url, raw), key


NODE_DIR = Path(__file__).resolve().parents[2] / "node"


def node_script(script: str, *, package: str) -> Path:
    """tests/node/<script>, with tests/node's npm packages installed (skips without Node.js or npm)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed on this machine")
    if not (NODE_DIR / "node_modules" / package).exists():
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            pytest.skip(f"could not install the {package} npm package: {result.stderr.strip()[:200]}")
    return NODE_DIR / script
