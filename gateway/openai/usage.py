"""Token estimates for ``usage`` and ``max_tokens`` (Kimi's web chat reports no token counts).

The rule, for the README: every CJK character (Han, kana, Hangul, CJK and full-width punctuation)
counts as 1 token; every other character as a quarter token; the sum is rounded up. So "hello world"
(11 characters) is 3 tokens and "你好" is 2. ``prompt_tokens`` is the estimate of the text sent
upstream (the flattened prompt); ``completion_tokens`` that of everything the client was sent: the
content (including ``<think>`` tags, the source list and notices) plus ``reasoning_content``. Reasoning
hidden with ``reasoning_format: hidden`` is not counted, and does not count against ``max_tokens``.
"""

from __future__ import annotations

import dataclasses
import math
import re

_CJK_RE = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)


def is_cjk(char: str) -> bool:
    return _CJK_RE.match(char) is not None


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring)."""
    cjk = len(_CJK_RE.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


@dataclasses.dataclass
class TokenTally:
    """A running estimate over text that arrives in pieces; equal to ``estimate_tokens`` of the whole."""

    cjk: int = 0
    other: int = 0

    @property
    def tokens(self) -> int:
        return self.cjk + math.ceil(self.other / 4)

    def add(self, text: str) -> None:
        cjk = len(_CJK_RE.findall(text))
        self.cjk += cjk
        self.other += len(text) - cjk

    def fitting_prefix(self, text: str, limit: int) -> int:
        """How many leading characters of ``text`` can be added without exceeding ``limit`` tokens."""
        cjk, other = self.cjk, self.other
        for i, char in enumerate(text):
            if is_cjk(char):
                cjk += 1
            else:
                other += 1
            if cjk + math.ceil(other / 4) > limit:
                return i
        return len(text)
