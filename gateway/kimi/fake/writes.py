"""Encoding frames and events, and shaping how they are written (pure; doc 1.9, 2.2).

A stream is a list of steps: ``bytes`` (one write), ``Pause(seconds)`` or ``CUT`` (close the connection
without finishing the body). By default each frame is its own write; the ``coalesce`` and ``split_writes``
faults regroup the bytes to exercise a client's buffering.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

FLAG_DATA = 0x00
FLAG_END = 0x02


@dataclasses.dataclass(frozen=True)
class Pause:
    seconds: float


class _Cut:
    def __repr__(self) -> str:
        return "CUT"


CUT = _Cut()
# A cut follows the frames before it after a short pause, as when a server dies after flushing them:
# the client has read what was sent before the connection goes (a cut arriving in the same read as the
# data would let a client's transport discard that data, and the test would no longer be about a cut).
CUT_AFTER_SECONDS = 0.05
Step = bytes | Pause | _Cut


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def envelope(obj: Any, flag: int = FLAG_DATA) -> bytes:
    """One Connect envelope: flag byte, 4-byte big-endian length, JSON (doc 2.2.1)."""
    body = dumps(obj)
    return struct.pack(">BI", flag, len(body)) + body


def sse(obj: Any) -> bytes:
    """One legacy SSE event: ``data: <compact JSON>`` and a blank line (doc 1.9)."""
    return b"data: " + dumps(obj) + b"\n\n"


def _split_points(chunk: bytes, header_cut: int) -> list[int]:
    points = {header_cut}
    lead = next((i for i in range(header_cut + 1, len(chunk)) if chunk[i] >= 0xC0), None)
    if lead is not None:
        points.add(lead + 1)  # between the lead byte and its continuation bytes
    middle = (header_cut + len(chunk)) // 2
    points.add(middle)
    return sorted(p for p in points if 0 < p < len(chunk))


def split_chunk(chunk: bytes, header_cut: int) -> list[bytes]:
    """``chunk`` cut inside its header, in the middle, and inside its first multi-byte UTF-8 character."""
    pieces, start = [], 0
    for point in _split_points(chunk, header_cut):
        pieces.append(chunk[start:point])
        start = point
    pieces.append(chunk[start:])
    return [p for p in pieces if p]


def shape_writes(steps: list[Step], *, split: bool, coalesce: bool, header_cut: int) -> list[Step]:
    if coalesce:
        steps = _coalesce(steps)
    if split:
        shaped: list[Step] = []
        for step in steps:
            if isinstance(step, bytes):
                shaped.extend(split_chunk(step, header_cut))
            else:
                shaped.append(step)
        steps = shaped
    return steps


def _coalesce(steps: list[Step], group: int = 3) -> list[Step]:
    out: list[Step] = []
    run: list[bytes] = []
    for step in steps:
        if isinstance(step, bytes):
            run.append(step)
            if len(run) == group:
                out.append(b"".join(run))
                run = []
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(step)
    if run:
        out.append(b"".join(run))
    return out


def pace(steps: list[Step], delay: float) -> list[Step]:
    """A pause after every write (the scripted per-event delay)."""
    if delay <= 0:
        return steps
    paced: list[Step] = []
    for step in steps:
        paced.append(step)
        if isinstance(step, bytes):
            paced.append(Pause(delay))
    return paced
