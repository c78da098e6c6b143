"""The three call-block grammars as incremental parsers: the envelope, the K2 form and the K3 form.

A block parser is created when the text scanner (parser.py) sees a start marker; it is fed the block's
text from that marker on and answers with ``BlockEvent``s. It knows the grammar only: which tool names
are declared, and what a call means, is the caller's business. After ``InvokeOpened`` it stops and
waits for ``commit()`` (the name is declared: the block is a call and its text will never be released
as plain text, so what has been parsed can be dropped as it goes) or for the caller to release the
block as text. Tolerated drift: tag and attribute case, whitespace inside tags and between them, text
between tags (ignored), a missing ``</invoke>`` before ``</tool_calls>``.
"""

from __future__ import annotations

import dataclasses
import re

MAX_HEAD = 300  # an opening tag (or K2/K3 call header) longer than this is not one


@dataclasses.dataclass(frozen=True)
class RawCall:
    """A call as written: ``params`` as (name, raw text, type hint) for the envelope and K3 forms,
    ``json_text`` for the K2 form, ``body`` for a freeform input written without a parameter tag."""

    name: str
    params: tuple[tuple[str, str, str | None], ...] = ()
    json_text: str | None = None
    body: str | None = None


@dataclasses.dataclass(frozen=True)
class Opened:
    """The block header is valid: from here on the block is captured."""


@dataclasses.dataclass(frozen=True)
class Rejected:
    """Not a block after all (``reason``: ``wrong_nonce``, ``not_a_tag``): its text is plain text."""

    reason: str


@dataclasses.dataclass(frozen=True)
class InvokeOpened:
    name: str


@dataclasses.dataclass(frozen=True)
class CallDone:
    call: RawCall


@dataclasses.dataclass(frozen=True)
class Closed:
    """The closing marker; ``rest`` is everything after it (never forwarded)."""

    rest: str


BlockEvent = Opened | Rejected | InvokeOpened | CallDone | Closed


class Again:
    """A step that consumed text without an event: take the next step."""


AGAIN = Again()

_I = re.IGNORECASE
_TAG_RE = re.compile(r"<\s*(/?)\s*([A-Za-z_][\w.:-]*)([^<>]*?)(/?)\s*>", _I)
_HEAD_RE = re.compile(r"""<tool_calls((?:\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>/]+))*)\s*>""", _I)
_ATTR_RE = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>/]+))""")
_VALUE_STOP_RE = re.compile(r"<!\[CDATA\[|<\s*/\s*parameter\s*>", _I)
_INVOKE_STOP_RE = re.compile(r"<!\[CDATA\[|<\s*/\s*invoke\s*>", _I)
_STOP_OVERLAP = 24  # longest stop marker with some whitespace drift
_CDATA_OPEN, _CDATA_CLOSE = "<![CDATA[", "]]>"


def attributes(text: str) -> dict[str, str]:
    """``name="x" ID='y'`` -> ``{"name": "x", "id": "y"}`` (names lowercased, values stripped)."""
    found = {}
    for m in _ATTR_RE.finditer(text):
        found[m[1].lower()] = next(v for v in (m[2], m[3], m[4]) if v is not None).strip()
    return found


class BlockParser:
    """Shared machinery: the captured text, the commit rule and raw-value scanning."""

    def __init__(self) -> None:
        self.buf = ""  # captured text not yet consumed (all of it until commit)
        self.pos = 0
        self.committed = False
        self.state = "head"
        self._parts: list[str] = []  # the value being scanned, in order
        self._cdata: list[str] = []  # its CDATA contents alone
        self._raw_blank = True  # nothing but whitespace outside CDATA so far

    @property
    def text(self) -> str:
        """The whole captured text; only complete until ``commit()`` (what a release forwards)."""
        return self.buf

    @property
    def at_rest(self) -> bool:
        """Between calls: only the closing marker is missing (a stream ending here lost nothing)."""
        return False

    def commit(self) -> None:
        self.committed = True

    @property
    def prose(self) -> bool:
        """No call was begun: a header (and perhaps its closing marker) written as words, e.g. a model
        explaining the format. Such a block is released as text rather than dropped."""
        if self.committed:
            return False
        return self.state == "closed" or (self.at_rest and "<" not in self.buf[self.pos :])

    def pending_call(self) -> RawCall | None:
        """At the end of the stream: the call being parsed, when only its closing tags are missing."""
        return None

    def feed(self, text: str) -> list[BlockEvent]:
        self.buf += text
        events: list[BlockEvent] = []
        while True:
            event = self.step()
            if event is None:
                break
            if isinstance(event, Again):
                continue
            events.append(event)
            if isinstance(event, Rejected | Closed) or (isinstance(event, InvokeOpened) and not self.committed):
                break
        if self.committed and self.pos > 4096:  # drop what is parsed, so long arguments stay linear
            self.buf, self.pos = self.buf[self.pos :], 0
        return events

    def step(self) -> BlockEvent | Again | None:
        """One grammar step at ``pos``: an event, or None when more text is needed."""
        raise NotImplementedError

    def skip_space(self) -> None:
        while self.pos < len(self.buf) and self.buf[self.pos].isspace():
            self.pos += 1

    def scan_value(self, stop: re.Pattern[str]) -> str | None:
        """Raw text up to ``stop`` with CDATA sections taken verbatim; None until ``stop`` arrived.

        A value that is only a CDATA section (with whitespace around) is its content exactly; otherwise
        one newline after the opening tag and one before the closing tag are layout, not value. The
        value's state is kept in ``self.state``'s ``cdata`` suffix and the part lists, so each piece of
        text is searched once (what cannot be the start of a stop marker is moved out of ``buf``).
        """
        buf = self.buf
        while True:
            if self.state.endswith("cdata"):
                end = buf.find(_CDATA_CLOSE, self.pos)
                if end < 0:
                    self._keep(len(buf) - 2, cdata=True)
                    return None
                self._take(buf[self.pos : end], cdata=True)
                self.pos, self.state = end + 3, self.state[: -len("cdata")]
                continue
            m = stop.search(buf, self.pos)
            if m is None:
                self._keep(len(buf) - _STOP_OVERLAP, cdata=False)
                return None
            self._take(buf[self.pos : m.start()], cdata=False)
            self.pos = m.end()
            if m[0] == _CDATA_OPEN:
                self.state += "cdata"
                continue
            return self._value()

    def _take(self, piece: str, *, cdata: bool) -> None:
        self._parts.append(piece)
        if cdata:
            self._cdata.append(piece)
        elif piece.strip():
            self._raw_blank = False

    def _keep(self, safe: int, *, cdata: bool) -> None:
        if safe > self.pos and self.committed:
            self._take(self.buf[self.pos : safe], cdata=cdata)
            self.pos = safe

    def _value(self) -> str:
        parts, cdata, raw_blank = self._parts, self._cdata, self._raw_blank
        self._parts, self._cdata, self._raw_blank = [], [], True
        if cdata and raw_blank:
            return "".join(cdata)
        value = "".join(parts)
        value = value[2:] if value.startswith("\r\n") else value[1:] if value.startswith("\n") else value
        return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value


class EnvelopeBlock(BlockParser):
    """``<tool_calls id="NONCE">`` ``<invoke name=..>`` ``<parameter name=..>value</parameter>`` ...
    ``</invoke>`` ``</tool_calls>``. A block with another id is text; one without an id is accepted.

    States: ``head`` -> ``body`` (between invokes) -> ``invoke_start`` -> ``invoke`` (between parameters)
    / ``rawbody`` (a freeform input written straight into the invoke) -> ``value`` -> ... -> ``closed``.
    """

    def __init__(self, *, nonce: str) -> None:
        super().__init__()
        self.nonce = nonce
        self.matched = False  # the header carried this request's nonce: a call was meant
        self._name = ""
        self._param = ""
        self._params: list[tuple[str, str, str | None]] = []

    @property
    def at_rest(self) -> bool:
        return self.state == "body"

    @property
    def prose(self) -> bool:
        return super().prose and not self.matched

    def pending_call(self) -> RawCall | None:
        return RawCall(name=self._name, params=tuple(self._params)) if self.state == "invoke" else None

    def step(self) -> BlockEvent | Again | None:
        state = self.state
        if state == "head":
            return self._head()
        if state.startswith("value"):
            value = self.scan_value(_VALUE_STOP_RE)
            if value is None:
                return None
            self._params.append((self._param, value, None))
            self.state = "invoke"
            return AGAIN
        if state.startswith("rawbody"):
            body = self.scan_value(_INVOKE_STOP_RE)
            if body is None:
                return None
            self.state = "body"
            return CallDone(RawCall(name=self._name, body=body))
        if state == "selfclosed":
            self.state = "body"
            return CallDone(RawCall(name=self._name))
        if state == "close_next":
            return self._close()
        if state == "invoke_start":
            return self._invoke_start()
        return self._tag()

    def _head(self) -> BlockEvent | None:
        m = _HEAD_RE.match(self.buf)
        if m is None:  # "<tool_calls to wrap calls, a > b" is prose, not a tag with odd attributes
            more = ">" not in self.buf and "<" not in self.buf[1:] and len(self.buf) < MAX_HEAD
            return None if more else Rejected("not_a_tag")
        nonce = attributes(m[1]).get("id")
        if nonce is not None and nonce != self.nonce:
            return Rejected("wrong_nonce")
        self.matched = nonce is not None
        self.pos, self.state = m.end(), "body"
        return Opened()

    def _invoke_start(self) -> Again | None:
        self.skip_space()
        rest = self.buf[self.pos : self.pos + len(_CDATA_OPEN)]
        if not rest or (len(rest) < len(_CDATA_OPEN) and _CDATA_OPEN.startswith(rest)):
            return None  # "<![CD" may still become CDATA
        self.state = "rawbody" if rest[0] != "<" or rest == _CDATA_OPEN else "invoke"
        return AGAIN

    def _tag(self) -> BlockEvent | Again | None:
        start = self.buf.find("<", self.pos)
        if start < 0:
            self.pos = len(self.buf)  # text between tags is ignored
            return None
        m = _TAG_RE.match(self.buf, start)
        if m is None:
            if ">" not in self.buf[start:] and len(self.buf) - start < MAX_HEAD:
                self.pos = start
                return None
            self.pos = start + 1
            return AGAIN
        self.pos = m.end()
        closing, name, state = bool(m[1]), m[2].lower(), self.state
        if not closing and name == "invoke" and state == "body":
            self._name, self._params = attributes(m[3]).get("name", ""), []
            self.state = "selfclosed" if m[4] else "invoke_start"
            return InvokeOpened(self._name)
        if not closing and name == "parameter" and state == "invoke":
            self._param, self.state = attributes(m[3]).get("name", ""), "value"
            return AGAIN
        if closing and name == "invoke" and state == "invoke":
            self.state = "body"
            return CallDone(RawCall(name=self._name, params=tuple(self._params)))
        if closing and name == "tool_calls":
            if state == "invoke":  # </invoke> forgotten: the call ends with the block
                self.state = "close_next"
                return CallDone(RawCall(name=self._name, params=tuple(self._params)))
            return self._close()
        return AGAIN  # any other tag between tags is ignored

    def _close(self) -> BlockEvent:
        self.state = "closed"
        return Closed(self.buf[self.pos :])


_K2_TOKEN_RE = re.compile(r"<\|tool_call_begin\|>|<\|tool_calls?_section_end\|>", _I)
_K2_ARGS_BEGIN = "<|tool_call_argument_begin|>"
_K2_ARGS_STOP_RE = re.compile(r"<\|tool_call_end\|>|<\|tool_calls?_section_end\|>", _I)
_K2_NAME_RE = re.compile(r"\A(?:functions\.)?(.+?)(?::\d+)?\Z", re.DOTALL)
_K2_OVERLAP = 30


class K2Block(BlockParser):
    """``<|tool_calls_section_begin|>`` then per call ``<|tool_call_begin|>functions.NAME:IDX
    <|tool_call_argument_begin|>{json}<|tool_call_end|>``, then ``<|tool_calls_section_end|>``
    (Kimi K2's trained format; ``tool_call_section`` spelt either way)."""

    def __init__(self) -> None:
        super().__init__()
        self._name = ""
        self._scan = 0  # where the next search for a marker starts (text before it was searched)

    @property
    def at_rest(self) -> bool:
        return self.state == "body"

    def pending_call(self) -> RawCall | None:
        return RawCall(name=self._name, json_text=self.buf[self.pos :]) if self.state == "args" else None

    def step(self) -> BlockEvent | Again | None:
        buf = self.buf
        if self.state == "head":  # the scanner matched the whole section marker
            self.pos, self.state = buf.index("|>") + 2, "body"
            return Opened()
        if self.state == "body":
            m = _K2_TOKEN_RE.search(buf, self.pos)
            if m is None:
                self.pos = max(self.pos, len(buf) - _K2_OVERLAP)  # text between calls is ignored
                return None
            self.pos = m.end()
            if "section_end" in m[0].lower():
                return self._close()
            self.state = "name"
            return AGAIN
        if self.state == "name":
            end = buf.lower().find(_K2_ARGS_BEGIN, self.pos)
            if end < 0:
                if len(buf) - self.pos < MAX_HEAD:
                    return None
                self.state = "body"  # no call header after all
                return AGAIN
            found = _K2_NAME_RE.match(buf[self.pos : end].strip())
            self._name = found[1] if found else ""
            self.pos = self._scan = end + len(_K2_ARGS_BEGIN)
            self.state = "args"
            return InvokeOpened(self._name)
        if self.state == "args":
            m = _K2_ARGS_STOP_RE.search(buf, max(self.pos, self._scan))
            if m is None:
                self._scan = max(self.pos, len(buf) - _K2_OVERLAP)
                return None
            call = RawCall(name=self._name, json_text=buf[self.pos : m.start()])
            ended = m[0].lower() == "<|tool_call_end|>"
            self.pos, self.state = (m.end() if ended else m.start()), "body"  # a section end is read next
            return CallDone(call)
        return None

    def _close(self) -> BlockEvent:
        self.state = "closed"
        return Closed(self.buf[self.pos :])


_K3_HEAD_RE = re.compile(r"<\|open\|>\s*toolscall\b(.*?)<\|sep\|>", _I | re.DOTALL)
_K3_ARG_RE = re.compile(r"<\|open\|>\s*argument\b(.*?)<\|sep\|>", _I | re.DOTALL)
_K3_ARG_END_RE = re.compile(r"<\|close\|>\s*argument\s*<\|sep\|>", _I)
_K3_CALL_END_RE = re.compile(r"<\|close\|>\s*(?:tools)?call\s*<\|sep\|>", _I)
_K3_NEXT = "<|open|>toolscall"


class K3Block(BlockParser):
    """``<|open|>toolscall tool="NAME" index="N"<|sep|>`` then ``<|open|>argument key="K" type="T"<|sep|>
    VALUE<|close|>argument<|sep|>`` pairs, then ``<|close|>call<|sep|>``. Calls that follow one another
    (whitespace between) are one block: it closes at the first other text, or at the end of the stream."""

    def __init__(self) -> None:
        super().__init__()
        self._name = ""
        self._key = ""
        self._type: str | None = None
        self._params: list[tuple[str, str, str | None]] = []

    @property
    def at_rest(self) -> bool:
        return self.state == "after"

    def pending_call(self) -> RawCall | None:
        return RawCall(name=self._name, params=tuple(self._params)) if self.state == "args" else None

    def step(self) -> BlockEvent | Again | None:
        state = self.state
        if state in ("head", "next"):
            return self._header()
        if state == "opened":
            self.state = "args"
            return InvokeOpened(self._name)
        if state == "args":
            return self._args()
        if state == "value":
            m = _K3_ARG_END_RE.search(self.buf, self.pos)
            if m is None:
                self._keep(len(self.buf) - _STOP_OVERLAP, cdata=False)
                return None
            self._take(self.buf[self.pos : m.start()], cdata=False)
            self._params.append((self._key, self._value(), self._type))
            self.pos, self.state = m.end(), "args"
            return AGAIN
        if state == "after":
            self.skip_space()
            rest = self.buf[self.pos : self.pos + len(_K3_NEXT)].lower()
            if len(rest) < len(_K3_NEXT) and _K3_NEXT.startswith(rest):
                return None  # may be the next call
            if rest == _K3_NEXT:
                self.state = "next"
                return AGAIN
            return self._close()
        return None

    def _header(self) -> BlockEvent | Again | None:
        m = _K3_HEAD_RE.match(self.buf, self.pos)
        if m is None:
            if len(self.buf) - self.pos < MAX_HEAD:
                return None
            return Rejected("not_a_tag") if self.state == "head" else self._close()
        first = self.state == "head"
        self.pos = m.end()
        self._name, self._params = attributes(m[1]).get("tool", ""), []
        if first:
            self.state = "opened"
            return Opened()
        self.state = "args"
        return InvokeOpened(self._name)

    def _args(self) -> BlockEvent | Again | None:
        self.skip_space()
        end = _K3_CALL_END_RE.match(self.buf, self.pos)
        if end is not None:
            self.pos, self.state = end.end(), "after"
            return CallDone(RawCall(name=self._name, params=tuple(self._params)))
        arg = _K3_ARG_RE.match(self.buf, self.pos)
        if arg is not None:
            found = attributes(arg[1])
            self._key, self._type = found.get("key", ""), found.get("type")
            self.pos, self.state = arg.end(), "value"
            return AGAIN
        if len(self.buf) - self.pos < MAX_HEAD:
            return None
        self.pos += 1  # text that is no token is skipped
        return AGAIN

    def _close(self) -> BlockEvent:
        self.state = "closed"
        return Closed(self.buf[self.pos :])
