"""Where the answer text is inside Markdown code, so markup written there is never a call.

``CodeTracker`` follows fenced blocks (a line starting, after at most three spaces, with three or more
backticks or tildes, closed by a line of the same character at least as long) and inline code (a run
of N backticks up to the next run of exactly N). It sees the text in the order it streams and never
needs more of it to decide: a backtick run that ends a piece is remembered and finished by the next
piece. Inline code ends at a line break here (CommonMark lets it span lines of a paragraph): a stray
backtick must not disable calls for the rest of the answer, and a block always starts on a tag.
"""

from __future__ import annotations


class CodeTracker:
    """The code state of the text seen so far; ``in_code`` says whether the next character is code."""

    def __init__(self) -> None:
        self.fence_char = ""  # "`" or "~" inside a fenced block
        self.fence_len = 0
        self.inline = 0  # length of the open inline code run (0: none)
        self.line_start = True  # nothing but spaces on this line so far
        self.indent = 0
        self.opening_line = False  # on the line that opened a backtick fence
        self.closer = False  # this line so far closes the fence, if nothing else follows
        self.run_char = ""  # a run of backticks/tildes that may continue in the next piece
        self.run_len = 0
        self.run_line_start = False
        self.run_indent = 0

    def in_code(self) -> bool:
        """Whether a character arriving now is inside code (a pending run is complete by then)."""
        self.end_run()
        return bool(self.fence_char) or self.inline > 0

    def plain(self, text: str) -> None:
        """Characters that are neither a newline nor a backtick/tilde."""
        if not (self.line_start or self.closer or self.run_char) or not text:
            return  # mid-line text changes nothing (the common case: keep it cheap)
        self.end_run()
        if not text.strip(" \t"):  # spaces: indentation, or what may follow a closing fence
            if self.line_start:
                self.indent += len(text)
            return
        self.line_start = False
        self.closer = False

    def newline(self) -> None:
        self.end_run()
        if self.fence_char and self.closer:
            self.fence_char, self.fence_len = "", 0
        self.closer = self.opening_line = False
        self.inline = 0
        self.line_start, self.indent = True, 0

    def run(self, char: str, length: int) -> None:
        """A run of ``char`` (backtick or tilde); it may continue in the next piece until ``end_run``."""
        if self.run_char == char:
            self.run_len += length
            return
        self.end_run()
        self.run_char, self.run_len = char, length
        self.run_line_start, self.run_indent = self.line_start, self.indent
        self.line_start = False

    def end_run(self) -> None:
        """The pending run is complete: decide what it opens or closes."""
        char, length = self.run_char, self.run_len
        if not char:
            return
        self.run_char, self.run_len = "", 0
        at_start = self.run_line_start and self.run_indent <= 3
        if self.fence_char:
            if self.opening_line and char == "`":  # a backtick on a fence's opening line: it was inline code
                self.fence_char, self.inline, self.opening_line = "", self.fence_len, False
                self._inline_run(length)
            elif at_start and char == self.fence_char and length >= self.fence_len:
                self.closer = True
            else:
                self.closer = False
            return
        if at_start and length >= 3 and self.inline == 0:
            self.fence_char, self.fence_len, self.opening_line = char, length, char == "`"
        elif char == "`":
            self._inline_run(length)

    def _inline_run(self, length: int) -> None:
        if self.inline == 0:
            self.inline = length
        elif self.inline == length:
            self.inline = 0
