"""What the fake Kimi writes to call a CLI's shell tool, in the tool core's call envelope
(gateway/tools/README.md; a block without the nonce id is accepted)."""

from __future__ import annotations

import secrets


def shell_call(tool: str, parameter: str, command: str) -> str:
    return "\n".join(
        [
            "<tool_calls>",
            f'<invoke name="{tool}">',
            f'<parameter name="{parameter}">{command}</parameter>',
            "</invoke>",
            "</tool_calls>",
        ]
    )


def marker_command() -> tuple[str, str]:
    """``echo <random>-$((6*7))`` and what it prints: the output differs from the command's text, so
    finding it upstream proves the CLI really ran the command (not that the call was echoed back)."""
    token = f"kp{secrets.token_hex(6)}"
    return f"echo {token}-$((6*7))", f"{token}-42"
