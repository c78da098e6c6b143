"""CPU cost of the tool-call parser: a 48 KB answer-like text through ToolCallParser, in us per KB.

    .venv/bin/python bench/tools_parser.py [--repeats 20] [--piece 24]

Pure CPU, no sockets, bounded (a few seconds). Three answers of the same size: plain prose with code
(what every answer with tools declared pays), the same ending in one call, and one call whose string
argument is the 48 KB (a file write). Each is fed in pieces of ``--piece`` characters, as upstream
deltas arrive; the figure is the median over the repeats, beside a bare loop over the same pieces.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.tools.parser import ToolCallParser  # noqa: E402
from gateway.tools.spec import ToolSet, ToolSpec  # noqa: E402

SIZE = 48 * 1024
NONCE = "bench0nce"
TOOLS = ToolSet(
    tools=tuple(
        ToolSpec(
            name=f"tool_{i}",
            description="A tool.",
            parameters={"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
        )
        for i in range(12)
    )
)
PARAGRAPH = (
    "The function `parse_config` reads the file and returns a dict; when a < b the loop stops early.\n"
    "See the example below, which uses <b>HTML</b> and a ~~strike~~ for emphasis:\n\n"
    "```python\ndef f(a, b):\n    return a if a < b else b  # <tool_calls> in code is text\n```\n\n"
)


def answers() -> dict[str, str]:
    prose = (PARAGRAPH * (SIZE // len(PARAGRAPH) + 1))[:SIZE]
    call = (
        f'\n<tool_calls id="{NONCE}">\n<invoke name="tool_3">\n<parameter name="path">a.py</parameter>\n'
        '<parameter name="content">print(1)</parameter>\n</invoke>\n</tool_calls>'
    )
    big = (
        f'<tool_calls id="{NONCE}">\n<invoke name="tool_5">\n<parameter name="path">big.py</parameter>\n'
        f'<parameter name="content"><![CDATA[{prose}]]></parameter>\n</invoke>\n</tool_calls>'
    )
    return {"plain prose": prose, "prose + one call": prose[: SIZE - len(call)] + call, "one 48 KB argument": big}


def measure(text: str, piece: int, repeats: int) -> tuple[float, float]:
    pieces = [text[i : i + piece] for i in range(0, len(text), piece)]
    parsed, bare = [], []
    for _ in range(repeats):
        start = time.process_time()
        parser = ToolCallParser(TOOLS, nonce=NONCE)
        for p in pieces:
            parser.feed(p)
        parser.finish()
        parsed.append(time.process_time() - start)
        start = time.process_time()
        sink = []
        for p in pieces:
            sink.append(p)
        bare.append(time.process_time() - start)
    kb = len(text) / 1024
    return statistics.median(parsed) / kb * 1e6, statistics.median(bare) / kb * 1e6


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=20)
    options.add_argument("--piece", type=int, default=24, help="characters per upstream delta")
    args = options.parse_args()
    repeats = max(1, min(args.repeats, 200))
    print(f"{'answer':<22}{'parser us/KB':>14}{'bare loop us/KB':>18}")
    for name, text in answers().items():
        parsed, bare = measure(text, max(1, args.piece), repeats)
        print(f"{name:<22}{parsed:>14.1f}{bare:>18.1f}")


if __name__ == "__main__":
    main()
