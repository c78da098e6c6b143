"""A streamed ``response_format`` answer without its code fence: ``JsonFenceStripper``.

Models asked for bare JSON still often wrap it in ```json … ```. A collected answer is cleaned by
``extract_json`` (structured.py); a streamed one passes through this filter, which drops a leading
fence line and the closing fence as the text goes by. Like the tool parser it holds back only what
could still become a fence: the start of the answer until it is clearly not one (or the opening
line ended), and at the end of each piece at most a line break and up to three backticks or tildes.
Safe because JSON cannot hold them there: a newline inside a JSON string is written ``\\n``, and no
JSON value ends with a backtick. What follows the closing fence (a sentence about the JSON) is
dropped. An answer that does not start with a fence passes unchanged.
"""

from __future__ import annotations

import re

_OPENING = re.compile(r"(```|~~~)[ \t]*[A-Za-z0-9_+.-]*[ \t]*\r?\n")
_MAYBE_OPENING = re.compile(r"(`{1,3}|~{1,3})$|(```|~~~)[ \t]*[A-Za-z0-9_+.-]{0,20}[ \t]*\r?$")
_CLOSING = re.compile(r"\r?\n[ \t]*(```|~~~)")
_MAYBE_CLOSING = re.compile(r"(\r?\n[ \t]*)?(`{1,2}|~{1,2})?\r?$|(`{1,3}|~{1,3})[ \t\r\n]*$")


class JsonFenceStripper:
    """Feed the answer text in pieces; each call returns what may be sent now."""

    def __init__(self) -> None:
        self._state = "start"  # start | fenced | plain | after
        self._held = ""

    def feed(self, text: str, *, final: bool = False) -> str:
        if self._state == "after":
            return ""
        self._held += text
        if self._state == "start":
            head = self._held.lstrip()
            opening = _OPENING.match(head)
            if opening:
                self._state, self._held = "fenced", head[opening.end() :]
            elif not final and (not head or _MAYBE_OPENING.fullmatch(head)):
                return ""
            else:
                self._state = "plain"
        if self._state == "plain":
            out, self._held = self._held, ""
            return out
        closing = _CLOSING.search(self._held)
        if closing:
            out, self._held, self._state = self._held[: closing.start()], "", "after"
            return out
        if final:
            out, self._held = re.sub(r"\s*(`{1,3}|~{1,3})\s*$", "", self._held), ""
            return out
        maybe = _MAYBE_CLOSING.search(self._held)
        cut = maybe.start() if maybe else len(self._held)
        out, self._held = self._held[:cut], self._held[cut:]
        return out
