"""Protocol drift: what one upstream turn sent that the gateway did not understand. Pure: no I/O.

Kimi's shapes change without notice (kimi-web-protocol.md Appendix C lists such changes, found late,
by reading other people's code). The translators tolerate what they do not know (doc 2.7.1: "a gateway
should ignore unknown block kinds"; doc 1.10 for legacy events) and note it in the turn's ``Drift``, so
the operator learns of a change from the gateway instead of from users. Kinds:

* ``frame`` — a frame, event or block kind no handler knows (a Connect frame key, a block kind; a legacy
  ``event``);
* ``field`` — a field path a frame names that the catalogue does not (a Connect ``mask`` path or ``op``,
  doc 2.7 / 2.7.1; a legacy event's unknown key, a ``search_plus`` ``msg.type``, doc 1.10 / 1.11);
* ``error`` — an error reason, code or type the mapping does not name (it was decided by a keyword guess
  or a default: C.13's uncertain quota forms count too, so the operator learns their real names);
* ``citation`` — a citation marker that could not be mapped and was stripped, or an opener never closed
  and released as text (C.1).

A ``Drift`` lives in memory for one turn (the session owns it, ``base.KimiSession.drift``): counts per
(kind, key) and the first ``SAMPLES_PER_KEY`` samples, redacted when noted. The request's final write
stores it once (gateway/records/drift.py), never a database write per frame.

Redaction keeps a sample's structure (keys, types, lengths) and drops what may be secret or private:
every string becomes ``"<str:N>"`` (N its length) except short enum-like values under keys known to hold
enum names (``op``, ``mask``, ``reason``, ``code``, ...); numbers become ``"<int>"`` / ``"<float>"``. So no
token, id, question or answer text is stored.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Literal

DriftKind = Literal["frame", "field", "error", "citation"]
KINDS: tuple[DriftKind, ...] = ("frame", "field", "error", "citation")

SAMPLES_PER_KEY = 3  # samples kept per (kind, key); the database keeps as many per row
MAX_KEYS = 32  # distinct (kind, key) pairs one turn notes; more are counted under OVERFLOW_KEY
OVERFLOW_KEY = "<more-keys>"
MAX_SAMPLE_CHARS = 2048  # a redacted sample's JSON is at most this long
MAX_KEY_CHARS = 120

# Keys whose string values are enum names, not data: kept when they look like one (``_ENUM``).
SAFE_VALUE_KEYS = frozenset(
    {"op", "mask", "reason", "code", "type", "status", "severity", "event", "error_type", "role", "scenario"}
    | {"kind", "locale", "zone_type", "flags"}
)
_ENUM = re.compile(r"[A-Za-z_][A-Za-z0-9_.:#\-]{0,63}")
_MASK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:,[A-Za-z_][A-Za-z0-9_.]*)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")  # a dict key kept as is
_KEY = re.compile(r"[A-Za-z0-9_<][A-Za-z0-9_.:,+#=<>\-]{0,119}")  # a counted key kept as is
_DEPTHS = (6, 3, 1)  # tried in turn until the sample fits MAX_SAMPLE_CHARS
_LIST_ITEMS = 3


@dataclasses.dataclass(frozen=True)
class DriftItem:
    """One (kind, key) of a turn: how often it was seen and its first redacted samples."""

    kind: DriftKind
    key: str
    count: int
    samples: tuple[Any, ...] = ()


class Drift:
    """The drift of one upstream turn (or of a session's turns): counts and redacted samples."""

    def __init__(self) -> None:
        self._counts: dict[tuple[DriftKind, str], int] = {}
        self._samples: dict[tuple[DriftKind, str], list[Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._counts)

    def note(self, kind: DriftKind, key: str, sample: object = None, *, redacted: bool = False) -> None:
        """Count one ``key`` of ``kind``; ``sample`` is the raw object it was seen in (redacted here,
        unless ``redacted`` says the caller built an already safe one)."""
        name = safe_key(key)
        slot = (kind, name)
        if slot not in self._counts and len(self._counts) >= MAX_KEYS:
            slot = (kind, OVERFLOW_KEY)
        self._counts[slot] = self._counts.get(slot, 0) + 1
        samples = self._samples.setdefault(slot, [])
        if sample is not None and len(samples) < SAMPLES_PER_KEY:
            samples.append(sample if redacted else redact(sample))

    def items(self) -> list[DriftItem]:
        return [
            DriftItem(kind=kind, key=key, count=count, samples=tuple(self._samples.get((kind, key), ())))
            for (kind, key), count in sorted(self._counts.items())
        ]

    def count(self, kind: DriftKind, key: str) -> int:
        return self._counts.get((kind, safe_key(key)), 0)


def safe_key(key: str) -> str:
    """A counted key as stored: upstream names (``telemetry``, ``block.agentArtifact``, a reason) kept,
    anything that does not look like a name (text, a token) replaced by its length."""
    if _KEY.fullmatch(key) and not _looks_like_token(key):
        return key
    return f"<str:{len(key)}>"


def redact(value: object) -> Any:
    """``value`` with every secret or private part replaced (see the module docstring), its JSON at most
    ``MAX_SAMPLE_CHARS`` long (a shallower copy when the full one is longer)."""
    for depth in _DEPTHS:
        sample = _redact(value, depth=depth, parent="")
        if len(json.dumps(sample, ensure_ascii=False)) <= MAX_SAMPLE_CHARS:
            return sample
    return _shape(value)


def _redact(value: object, *, depth: int, parent: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return "<int>"
    if isinstance(value, float):
        return "<float>"
    if isinstance(value, str):
        return value if parent in SAFE_VALUE_KEYS and _enum_like(parent, value) else f"<str:{len(value)}>"
    if depth <= 0:
        return _shape(value)
    if isinstance(value, dict):
        return {_dict_key(k): _redact(v, depth=depth - 1, parent=str(k)) for k, v in list(value.items())[:40]}
    if isinstance(value, list | tuple):
        items = [_redact(v, depth=depth - 1, parent=parent) for v in value[:_LIST_ITEMS]]
        return [*items, f"<+{len(value) - _LIST_ITEMS} more>"] if len(value) > _LIST_ITEMS else items
    return f"<{type(value).__name__}>"


def _shape(value: object) -> Any:
    if isinstance(value, dict):
        return f"<dict:{len(value)}>"
    if isinstance(value, list | tuple):
        return f"<list:{len(value)}>"
    return _redact(value, depth=0, parent="")


def _dict_key(key: object) -> str:
    text = str(key)
    return text if _NAME.fullmatch(text) and not _looks_like_token(text) else f"<key:{len(text)}>"


def _enum_like(parent: str, value: str) -> bool:
    if _looks_like_token(value):
        return False
    if parent == "mask":
        return len(value) <= MAX_KEY_CHARS and bool(_MASK.fullmatch(value))
    return bool(_ENUM.fullmatch(value))


def _looks_like_token(text: str) -> bool:
    # A JWT (access or refresh token) starts with the base64 of '{"'; ids are long runs of digits and
    # letters: neither is kept, whatever its key. Enum names have few digits.
    return text.startswith("eyJ") or sum(c.isdigit() for c in text) >= 6
