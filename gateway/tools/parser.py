"""The answer text -> text to forward and tool calls: ONE incremental state machine for every front door.

    parser = ToolCallParser(tools, nonce=nonce)
    for piece in answer_pieces:                  # the upstream's TextDelta texts, as they arrive
        for event in parser.feed(piece):
            ...                                  # Text / CallStarted / CallReady / BlockClosed
        if parser.closed:                        # stop forwarding; the pipeline drains the upstream
            break
    end = parser.finish(reasoning=reasoning)     # at the end of the stream (or after the block closed)
    ...                                          # end.events, end.calls, end.error; parser.stats for the log

Text is forwarded as it arrives; only a suffix that could be the start of a marker is held back, never
more than ``LONGEST_MARKER`` characters, and ``finish`` releases it. A start marker outside Markdown
code (markdown.py) begins a block (blocks.py): nothing of it is forwarded. A block whose header has
another nonce, or whose first call names a tool that is not offered, is released as plain text. Inside
an accepted block each call is announced (``CallStarted``) as soon as its name parses and given out
(``CallReady``) once its arguments are complete; calls to tools not offered are dropped, and with
``parallel`` false only the first call is kept. At the closing marker: ``BlockClosed``, ``closed`` turns
True and everything after it is trailing text, counted and never forwarded (the same block written
twice ends the turn at the first). A block that closes with calls begun but none usable is dropped
(the answer continues as text), flagged ``malformed_block``; one in which no call was begun (the tags
written as words) is released as text.

``finish``: an unclosed block is never forwarded either. Its complete calls (and a last call missing
only its closing tags) are used; without any, ``required``/named gets ``tool_call_malformed`` and
``auto`` keeps the text before the block (flag ``unclosed``). No block: text, or under ``required``
``tool_call_missing`` (status 502). When the visible answer is empty, a complete block in the
reasoning is used (``calls_in_reasoning``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Literal, cast

from gateway.openai.errors import GatewayError, UpstreamUnavailable
from gateway.tools import blocks, coerce
from gateway.tools.markdown import CodeTracker
from gateway.tools.spec import ToolCall, ToolSet, ToolSpec, new_call_id

Form = Literal["envelope", "k2", "k3"]
_MARKERS: tuple[tuple[str, Form, str], ...] = (  # start marker, its form, the characters that may follow it
    ("<tool_calls", "envelope", " \t\r\n>/"),
    ("<|tool_calls_section_begin|>", "k2", ""),
    ("<|tool_call_section_begin|>", "k2", ""),
    ("<|open|>toolscall", "k3", " \t\r\n"),
)
LONGEST_MARKER = max(len(m) for m, _, _ in _MARKERS)
TRAILING_KEPT = 65536
_PARTIAL = "partial"
_INTERESTING_RE = re.compile(r"[<`~\n]")
_RUN_RE = re.compile(r"`+|~+")


@dataclasses.dataclass(frozen=True)
class Text:
    """Answer text to forward now."""

    text: str


@dataclasses.dataclass(frozen=True)
class CallStarted:
    """A call's name parsed: it may be announced (id, name) before its arguments are complete."""

    index: int
    id: str
    name: str
    kind: str


@dataclasses.dataclass(frozen=True)
class CallReady:
    """A call with complete arguments (valid JSON; ``call.problems`` lists schema failures)."""

    call: ToolCall


@dataclasses.dataclass(frozen=True)
class BlockClosed:
    """The block ended: finish the answer with these calls and forward nothing more."""

    calls: tuple[ToolCall, ...]


Event = Text | CallStarted | CallReady | BlockClosed


@dataclasses.dataclass(frozen=True)
class Finish:
    """The end of the answer. Send ``events`` (released text, calls found only now) first; then finish
    with ``finish_reason: "tool_calls"`` when ``calls`` is not empty, or fail with ``error`` (a 502)."""

    events: tuple[Event, ...]
    calls: tuple[ToolCall, ...]
    error: GatewayError | None = None


@dataclasses.dataclass(frozen=True)
class ParseStats:
    """What the log row records about tools."""

    declared: int = 0
    block_seen: bool = False
    form: str = ""  # envelope | k2 | k3 | reasoning
    outcome: str = "no_tools"  # no_tools | text | tool_calls | tool_call_missing | tool_call_malformed
    calls: int = 0
    schema_failures: int = 0
    unknown_names: tuple[str, ...] = ()
    trailing_chars: int = 0
    flags: tuple[str, ...] = ()


class ToolCallParser:
    """See the module docstring. ``new_id`` issues call ids (injectable for tests)."""

    def __init__(self, tools: ToolSet | None, *, nonce: str, new_id: Callable[[], str] = new_call_id) -> None:
        self.tools = tools
        self.nonce = nonce
        self._new_id = new_id
        self._active = tools is not None and bool(tools.offered)
        self._code = CodeTracker()
        self._held = ""  # a possible marker start at the end of the text
        self._block: blocks.BlockParser | None = None
        self._form = ""  # the first block's form, or "reasoning"
        self._current: tuple[str, int, ToolSpec] | None = None  # the accepted call being parsed
        self._dropping = False  # the call being parsed is not kept
        self._calls: list[ToolCall] = []
        self._checker = coerce.SchemaChecker()
        self._visible = False
        self._trailing: list[str] = []
        self._trailing_chars = 0
        self._flags: set[str] = set()
        self._unknown: list[str] = []
        self._block_seen = False
        self._outcome = "text" if self._active else "no_tools"
        self._finished = False
        self._resume = False
        self._block_calls = 0
        self.closed = False

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(self._calls)

    @property
    def held(self) -> str:
        """The text held back right now (tests: never longer than ``LONGEST_MARKER``)."""
        return self._held

    @property
    def trailing(self) -> str:
        """What came after the closing marker (its first ``TRAILING_KEPT`` characters)."""
        return "".join(self._trailing)

    @property
    def stats(self) -> ParseStats:
        return ParseStats(
            declared=len(self.tools.tools) if self.tools else 0,
            block_seen=self._block_seen,
            form=self._form,
            outcome=self._outcome,
            calls=len(self._calls),
            schema_failures=sum(1 for c in self._calls if c.problems),
            unknown_names=tuple(self._unknown),
            trailing_chars=self._trailing_chars,
            flags=tuple(sorted(self._flags)),
        )

    def feed(self, text: str) -> list[Event]:
        """Take the next piece of the answer; return what to do now."""
        if not text:
            return []
        if self.closed:
            self._trail(text)
            return []
        events: list[Event] = []
        if not self._active:
            self._emit(text, events)
            return events
        if self._block is None and not self._held and _INTERESTING_RE.search(text) is None:
            self._code.plain(text)  # nothing in it can start a marker or change the code state
            self._emit(text, events)
            return events
        self._run(text, events, final=False)
        return events

    def finish(self, *, reasoning: str = "") -> Finish:
        """The stream ended (or the block closed): release what is held and decide the outcome."""
        events: list[Event] = []
        if self._finished:
            return Finish(events=(), calls=tuple(self._calls))
        self._finished = True
        if self._active and not self.closed:
            if self._block is None:
                self._run("", events, final=True)
            while self._block is not None:  # a released header may hold the start of another block
                self._end_block(events)
        if not self._calls and not self._visible and reasoning and self._active:
            assert self.tools is not None
            for call in calls_in_reasoning(reasoning, self.tools, nonce=self.nonce, new_id=self._new_id):
                self._calls.append(call)
                events += [CallStarted(call.index, call.id, call.name, call.kind), CallReady(call)]
            if self._calls:
                self._flags.add("from_reasoning")
                self._form = "reasoning"
        return Finish(events=tuple(events), calls=tuple(self._calls), error=self._decide())

    # -- text ----------------------------------------------------------------------------------------

    def _run(self, text: str, events: list[Event], *, final: bool, skip_first: bool = False) -> None:
        """Scan text (after what is held) and parse blocks, switching as markers and blocks end."""
        pending = text
        while True:
            if self._block is None:
                buf, self._held = self._held + pending, ""
                stop, form = self._scan(buf, final=final, skip_first=skip_first)
                self._emit(buf[:stop], events)
                if form is None:
                    self._held = buf[stop:]
                    return
                self._open(form)
                pending = buf[stop:]
                skip_first = False
            assert self._block is not None
            released = self._feed_block(pending, events)
            if released is None:
                return
            pending, skip_first = released

    def _scan(self, buf: str, *, final: bool, skip_first: bool) -> tuple[int, Form | None]:
        """Where forwarding stops in ``buf`` and why: a block of ``form`` starts there, or (None) the
        rest may start a marker (held) or is empty."""
        code, pos, end = self._code, 0, len(buf)
        if skip_first:  # a released block: its "<" is plain text
            code.plain("<")
            pos = 1
        while True:
            m = _INTERESTING_RE.search(buf, pos)
            if m is None:
                code.plain(buf[pos:])
                return end, None
            i = m.start()
            code.plain(buf[pos:i])
            char = buf[i]
            if char == "\n":
                code.newline()
                pos = i + 1
                continue
            if char != "<":
                run = _RUN_RE.match(buf, i)
                assert run is not None
                code.run(char, run.end() - i)
                pos = run.end()
                continue
            if buf[i + 1 : i + 2] in "tT|" and not code.in_code():  # every marker starts "<t" or "<|"
                found = _marker(buf, i, final=final)
                if found == _PARTIAL:
                    return i, None
                if found is not None:
                    return i, cast(Form, found)
            code.plain("<")
            pos = i + 1

    def _emit(self, text: str, events: list[Event]) -> None:
        if text:
            self._visible = self._visible or not text.isspace()
            events.append(Text(text))

    def _trail(self, text: str) -> None:
        self._trailing_chars += len(text)
        kept = sum(len(t) for t in self._trailing)
        if kept < TRAILING_KEPT:
            self._trailing.append(text[: TRAILING_KEPT - kept])
        if text.strip():
            self._flags.add("trailing_after_tool")

    # -- blocks --------------------------------------------------------------------------------------

    def _open(self, form: Form) -> None:
        self._form = self._form or form
        if form == "envelope":
            self._block = blocks.EnvelopeBlock(nonce=self.nonce)
        else:
            self._block = blocks.K2Block() if form == "k2" else blocks.K3Block()
        self._current, self._dropping = None, False
        self._block_calls = 0

    def _feed_block(self, text: str, events: list[Event]) -> tuple[str, bool] | None:
        """Feed the block; returns text to scan as plain text again (and whether its first "<" is
        plain), or None when the block needs more (or closed the answer)."""
        block = self._block
        assert block is not None
        pending = text
        while True:
            for event in block.feed(pending):
                if isinstance(event, blocks.Rejected):
                    self._flags.add(event.reason)
                    return self._release()
                if isinstance(event, blocks.Opened):
                    self._block_seen = True
                elif isinstance(event, blocks.InvokeOpened):
                    if not self._invoke(event.name, events):
                        return self._release()
                elif isinstance(event, blocks.CallDone):
                    self._call_done(event.call, events)
                elif isinstance(event, blocks.Closed):
                    return self._closed(event.rest, events)
            if not self._resume:
                return None
            self._resume, pending = False, ""  # committed after its first call's name: parse on

    def _invoke(self, name: str, events: list[Event]) -> bool:
        """A call's name parsed. False: the block is plain text (its first call names no offered tool)."""
        assert self.tools is not None and self._block is not None
        tool = self.tools.find(name)
        self._dropping = True
        if tool is None:
            if name not in self._unknown and len(self._unknown) < 8:
                self._unknown.append(name[:64])
            self._flags.add("undeclared_name")
            if not self._block.committed:
                return False
        elif self._block_calls and not self.tools.parallel:
            self._flags.add("extra_calls_dropped")
        else:
            index = len(self._calls)
            self._current, self._dropping = (self._new_id(), index, tool), False
            events.append(CallStarted(index, self._current[0], tool.name, tool.kind))
        self._block_calls += 1
        if not self._block.committed:
            self._block.commit()
            self._resume = True
        return True

    def _call_done(self, raw: blocks.RawCall, events: list[Event]) -> None:
        current, self._current = self._current, None
        if self._dropping or current is None:
            return
        call_id, index, tool = current
        call = build_call(raw, tool, call_id=call_id, index=index, checker=self._checker)
        if call is None:
            self._flags.add("bad_arguments")
            return
        if call.problems:
            self._flags.add("schema_invalid")
        self._calls.append(call)
        events.append(CallReady(call))

    def _closed(self, rest: str, events: list[Event]) -> tuple[str, bool] | None:
        if not self._calls and self._block is not None and self._block.prose:
            return self._release()  # no call was begun in it: a header and its end written as words
        self._block = None
        if not self._calls:  # calls begun but none usable: drop the block's markup, go on with the answer
            self._flags.add("malformed_block")
            return rest, False
        self.closed = True
        events.append(BlockClosed(tuple(self._calls)))
        self._trail(rest)
        return None

    def _release(self) -> tuple[str, bool]:
        assert self._block is not None
        text, self._block = self._block.text, None
        return text, True

    def _end_block(self, events: list[Event]) -> None:
        """The stream ended inside a block."""
        block = self._block
        assert block is not None
        if block.state == "head" or block.prose:  # no call was begun: it was text
            text, skip = self._release()
            self._run(text, events, final=True, skip_first=skip)
            return
        pending = block.pending_call() if self._current is not None else None
        if pending is not None:  # only its closing tags are missing
            self._call_done(pending, events)
        self._flags.add("unclosed")
        self._block = None
        if self._calls:
            self.closed = True
            events.append(BlockClosed(tuple(self._calls)))

    def _decide(self) -> GatewayError | None:
        if not self._active:
            return None
        assert self.tools is not None
        if self._calls:
            self._outcome = "tool_calls"
            return None
        if not self.tools.required:
            self._outcome = "text"
            return None
        broken = self._flags & {"unclosed", "malformed_block", "bad_arguments"}
        self._outcome = "tool_call_malformed" if broken else "tool_call_missing"
        if broken:
            message = "The model started a tool call but did not complete a valid one, and a tool call is required."
        else:
            message = "The model answered without calling a tool, and tool_choice requires a tool call."
        return UpstreamUnavailable(message, code=self._outcome, status=502)


def _marker(buf: str, i: int, *, final: bool) -> Form | str | None:
    """The block form starting at ``buf[i]``, ``_PARTIAL`` when the rest of ``buf`` may still become
    one (never at the end of the stream), else None."""
    rest = buf[i : i + LONGEST_MARKER + 1].lower()
    for marker, form, follow in _MARKERS:
        if rest.startswith(marker):
            if not follow:
                return form
            if len(rest) == len(marker):
                return None if final else _PARTIAL
            if rest[len(marker)] in follow:
                return form
        elif len(rest) < len(marker) and marker.startswith(rest):
            return None if final else _PARTIAL
    return None


def build_call(
    raw: blocks.RawCall, tool: ToolSpec, *, call_id: str, index: int, checker: coerce.SchemaChecker
) -> ToolCall | None:
    """A parsed call -> its ``ToolCall`` (arguments as JSON text), or None when its arguments are not
    an object at all (the K2 form with broken JSON)."""
    params = {name: value for name, value, _ in raw.params}
    if tool.kind == "custom":
        text = raw.body if raw.body is not None else params.get("input")
        if text is None and len(params) == 1:
            text = next(iter(params.values()))
        if text is None and raw.json_text is not None:
            decoded = _json_object(raw.json_text)
            field = decoded.get("input") if decoded is not None else None
            text = field if isinstance(field, str) else raw.json_text
        return ToolCall(id=call_id, name=tool.name, arguments=str(text or ""), kind="custom", index=index)
    schema = tool.parameters
    source = raw.json_text if raw.json_text is not None else raw.body if not raw.params else None
    if source is not None:
        decoded = _json_object(source)
        if decoded is None:
            return None
        value = coerce.conform(decoded, schema, schema)
    else:
        value = coerce.arguments_from_params(raw.params, schema)
    problems = checker.problems(tool=tool.name, schema=schema, value=value)
    arguments = json.dumps(value, ensure_ascii=False)
    return ToolCall(id=call_id, name=tool.name, arguments=arguments, problems=problems, index=index)


def _json_object(text: str) -> dict[str, object] | None:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def calls_in_reasoning(
    reasoning: str, tools: ToolSet, *, nonce: str, new_id: Callable[[], str] = new_call_id
) -> tuple[ToolCall, ...]:
    """The calls of the only complete block in ``reasoning`` (the same block written twice counts
    once); none when there is no complete block or several different ones. For an answer whose
    visible text is empty: the model sometimes writes its call while thinking and then stops."""
    found: list[tuple[ToolCall, ...]] = []
    text = reasoning
    for _ in range(8):
        parser = ToolCallParser(tools, nonce=nonce, new_id=new_id)
        parser.feed(text)
        if not parser.closed:
            break
        found.append(parser.calls)
        text = parser.trailing
    distinct = {tuple((c.name, c.arguments) for c in calls) for calls in found}
    return found[0] if len(distinct) == 1 else ()
