"""Pure incremental decoders for the two upstream wire formats.

Modelled on httpx's ``_decoders.LineDecoder``: ``decode(chunk)`` takes whatever bytes the network
delivered (a fraction of a frame, or several frames at once) and returns the complete items; state is
kept across calls; ``flush()`` ends the stream. No Django, no httpx, no I/O.

* ``SSEDecoder``: legacy ``text/event-stream`` (protocol doc 1.9). UTF-8 may be split across chunks.
* ``ConnectDecoder``: Connect streaming envelopes, 1 flag byte + 4-byte big-endian length + payload
  (doc 2.2.1). ``flush()`` raises ``ProtocolError`` when the stream stops inside a frame.
"""

from __future__ import annotations

import codecs
import dataclasses
import struct

from gateway.kimi.base import ProtocolError

# A frame longer than this is not something Kimi sends; refusing it bounds our memory.
MAX_FRAME_BYTES = 16 * 1024 * 1024

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
_HEADER = struct.Struct(">BI")  # flags, payload length


@dataclasses.dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Bytes -> ``ServerSentEvent`` per the SSE spec: ``data:`` lines joined by newlines, dispatched on
    a blank line; ``\\r\\n``, ``\\r`` and ``\\n`` all end a line; comment lines (``:``) are skipped."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        self._text += self._utf8.decode(chunk)
        return self._drain_lines(final=False)

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a last line without its newline still counts, and a last event without
        its blank line is dispatched (the caller decides whether the stream ended properly)."""
        self._text += self._utf8.decode(b"", final=True)
        events = self._drain_lines(final=True)
        if self._text:
            self._line(self._text, events)
            self._text = ""
        self._dispatch(events)
        return events

    def _drain_lines(self, *, final: bool) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        while True:
            cut = _line_end(self._text, final=final)
            if cut is None:
                return events
            end, after = cut
            line, self._text = self._text[:end], self._text[after:]
            self._line(line, events)

    def _line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        if self._data:
            events.append(ServerSentEvent(data="\n".join(self._data), event=self._event or "message", id=self._id))
        self._data = []
        self._event = ""


def _line_end(text: str, *, final: bool) -> tuple[int, int] | None:
    """(end of line, start of the rest) for the first complete line in ``text``, else None.

    A trailing ``\\r`` is not a complete line until the next chunk shows whether ``\\n`` follows."""
    for index, char in enumerate(text):
        if char == "\n":
            return index, index + 1
        if char == "\r":
            if index + 1 < len(text):
                return index, index + (2 if text[index + 1] == "\n" else 1)
            return (index, index + 1) if final else None
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectFrame:
    flags: int
    data: bytes

    @property
    def end_stream(self) -> bool:
        return bool(self.flags & FLAG_END_STREAM)


class ConnectDecoder:
    """Bytes -> ``ConnectFrame``, parsed strictly by length (doc 2.2.1)."""

    def __init__(self, *, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def decode(self, chunk: bytes) -> list[ConnectFrame]:
        buffer = self._buffer
        buffer += chunk
        frames: list[ConnectFrame] = []
        start, size = 0, len(buffer)
        # Frames are read at an offset and the consumed bytes dropped once: one copy per chunk, not
        # one per frame (a network chunk often holds many small frames).
        while size - start >= 5:
            flags, length = _HEADER.unpack_from(buffer, start)
            if length > self._max:
                raise ProtocolError(f"Connect frame of {length} bytes exceeds the limit")
            if flags & FLAG_COMPRESSED:
                # We never send connect-accept-encoding, so a compressed frame is a protocol breach.
                raise ProtocolError("compressed Connect frame received")
            end = start + 5 + length
            if size < end:
                break
            frames.append(ConnectFrame(flags, bytes(buffer[start + 5 : end])))
            start = end
        if start:
            del buffer[:start]
        return frames

    def flush(self) -> list[ConnectFrame]:
        """End of stream: leftover bytes mean the stream was cut inside a frame."""
        if self._buffer:
            size = len(self._buffer)
            self._buffer.clear()
            raise ProtocolError(f"stream ended inside a Connect frame ({size} bytes left over)")
        return []


def encode_envelope(payload: bytes, *, flags: int = 0) -> bytes:
    """One Connect envelope (doc 2.2.1): a 193-byte body is sent as ``00 00 00 00 c1`` + body."""
    return _HEADER.pack(flags, len(payload)) + payload
