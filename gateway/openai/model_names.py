"""Model names clients send -> what to ask Kimi for (gateway convention, protocol doc 1.17 and 2.12).

``parse_model(name)`` never fails; it returns a ``ModelSpec``:

* ``kimi`` plus any of the suffixes ``-search``, ``-thinking`` (alias ``-k1``), ``-research``, ``-math``,
  ``-silent`` (search without the printed source list; implies search) and ``-agent`` (Connect's agent
  scenario, ``agent_id="kimi-agent"``), in any order and any case: ``kimi-search-thinking`` ==
  ``KIMI-Thinking-Search``. ``_`` counts as ``-`` (the ancestor spelled ``silent_search``).
* 20 lowercase letters/digits (``^[0-9a-z]{20}$``): a legacy Kimi+ agent id.
* A Connect upstream model id (``k2d6-chat``, ``k3-agent``, ``k28-agent-preview``...: ``k`` + digit...) passes
  through as ``upstream_model``; trailing ``-search`` / ``-silent`` are ours and become flags.
* Anything else (``gpt-4o``, ``kimi-latest``) is ``unknown``: served by the default model with no
  flags, and still echoed back as ``requested``.

``ModelSpec.canonical`` is one spelling per behaviour (``kimi-thinking-search`` -> ``kimi-search-thinking``,
``kimi-silent`` -> ``kimi-search-silent``); compare key allow-lists on it. ``ModelSpec.served`` is the
model that really answers (``kimi`` for an unknown name), sent in the ``x-kimiproxy-model`` header.

Aliases (``KIMIPROXY_MODEL_ALIASES="claude-opus-4=kimi-thinking,claude-haiku-4=kimi"``, every door):
a requested name that starts with an alias's name (case-insensitive; the longest such alias wins, so
dated ids such as ``claude-opus-4-20250514`` match) is served as the alias's target, and still echoed
back as requested.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from gateway.kimi.base import FileRef, ReasoningEffort, TurnRequest
from gateway.kimi.connect.catalogue import BUILTIN

BASE = "kimi"
CONNECT_AGENT = "kimi-agent"
# The built-in Connect catalogue (protocol doc 2.12, 2026-09); other ids of the same shape pass through too.
KNOWN_UPSTREAM_MODELS = BUILTIN.model_ids()
ADVERTISED_KIMI_MODELS = (
    "kimi",
    "kimi-search",
    "kimi-thinking",
    "kimi-search-thinking",
    "kimi-research",
    "kimi-math",
    "kimi-silent",
    "kimi-search-silent",
    "kimi-agent",
)

_AGENT_ID_RE = re.compile(r"[0-9a-z]{20}")
_UPSTREAM_RE = re.compile(r"k[0-9][0-9a-z]*(?:-[0-9a-z]+)*")
_SUFFIXES = {"search", "thinking", "k1", "k1.5", "research", "math", "silent", "agent"}
_UPSTREAM_SUFFIXES = {"search", "silent"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a requested model name asks for. ``requested`` is echoed back in every response."""

    requested: str
    search: bool = False
    thinking: bool = False
    research: bool = False
    math: bool = False
    silent: bool = False
    agent_id: str | None = None  # legacy 20-char Kimi+ id, or "kimi-agent" (Connect agent scenario)
    upstream_model: str | None = None  # Connect model id; None = the upstream default
    unknown: bool = False
    alias: str | None = None  # the alias (KIMIPROXY_MODEL_ALIASES) the requested name matched

    @property
    def served(self) -> str:
        """The model that really answers, in our names: an unknown name is served by the default."""
        return BASE if self.unknown else self.canonical

    @property
    def canonical(self) -> str:
        """One name per behaviour, for allow-lists and logs."""
        if self.unknown:
            return self.requested.strip().lower()
        if self.agent_id and self.agent_id != CONNECT_AGENT:
            return self.agent_id
        head = [self.upstream_model] if self.upstream_model else [BASE]
        names = ["search", "silent"] if self.upstream_model else ["search", "thinking", "research", "math", "silent"]
        tail = [n for n in names if getattr(self, n)]
        if self.agent_id == CONNECT_AGENT:
            tail.append("agent")
        return "-".join(head + tail)

    @property
    def flags(self) -> list[str]:
        """Short labels for the request log (``RequestLog.flags``)."""
        out = [n for n in ("search", "thinking", "research", "math", "silent") if getattr(self, n)]
        if self.agent_id:
            out.append(f"agent:{self.agent_id}")
        if self.upstream_model:
            out.append(f"model:{self.upstream_model}")
        if self.unknown:
            out.append("unknown_model")
        if self.alias:
            out.append(f"served:{self.served}")
        return out

    def turn_request(
        self,
        *,
        text: str,
        files: tuple[FileRef, ...] = (),
        chat_id: str | None = None,
        parent_id: str | None = None,
        reasoning_effort: ReasoningEffort | None = None,
    ) -> TurnRequest:
        """The upstream turn for this model with the given prompt (and the client's reasoning effort)."""
        return TurnRequest(
            text=text,
            files=files,
            search=self.search,
            thinking=self.thinking,
            reasoning_effort=reasoning_effort,
            research=self.research,
            math=self.math,
            agent_id=self.agent_id,
            model=self.upstream_model,
            chat_id=chat_id,
            parent_id=parent_id,
        )


Aliases = Sequence[tuple[str, str]]  # (alias name, lower case; target), longest name first


def parse_aliases(text: str) -> tuple[tuple[str, str], ...]:
    """``"name=target,name2=target2"`` -> aliases for ``parse_model``; ValueError names a bad entry."""
    pairs: list[tuple[str, str]] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, target = (s.strip() for s in entry.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"KIMIPROXY_MODEL_ALIASES: {entry!r} is not name=target")
        pairs.append((name.lower(), target))
    return tuple(sorted(pairs, key=lambda pair: -len(pair[0])))


def _configured_aliases() -> Aliases:
    from django.conf import settings  # only here: the rest of this module is pure

    return getattr(settings, "KIMIPROXY_MODEL_ALIASES", ()) if settings.configured else ()


def parse_model(name: str, *, aliases: Aliases | None = None) -> ModelSpec:
    """Flags for a requested model name (never raises; see the module docstring). ``aliases``: None
    reads ``settings.KIMIPROXY_MODEL_ALIASES``."""
    lowered = name.strip().lower()
    for alias, target in _configured_aliases() if aliases is None else aliases:
        if lowered.startswith(alias):
            return dataclasses.replace(_parse_name(target), requested=name, alias=alias)
    return _parse_name(name)


def _parse_name(name: str) -> ModelSpec:
    key = name.strip().lower().replace("_", "-")
    tokens = key.split("-")
    if tokens[0] == BASE and all(t in _SUFFIXES for t in tokens[1:]):
        return _kimi_spec(name, set(tokens[1:]))
    if key in ("k1", "k1.5"):  # the ancestor's reasoning model names (1.17)
        return ModelSpec(requested=name, thinking=True)
    if _AGENT_ID_RE.fullmatch(key):
        return ModelSpec(requested=name, agent_id=key)
    if _UPSTREAM_RE.fullmatch(key):
        return _upstream_spec(name, tokens)
    return ModelSpec(requested=name, unknown=True)


def _kimi_spec(name: str, suffixes: set[str]) -> ModelSpec:
    silent = "silent" in suffixes
    return ModelSpec(
        requested=name,
        search="search" in suffixes or silent,
        thinking=bool(suffixes & {"thinking", "k1", "k1.5"}),
        research="research" in suffixes,
        math="math" in suffixes,
        silent=silent,
        agent_id=CONNECT_AGENT if "agent" in suffixes else None,
    )


def _upstream_spec(name: str, tokens: list[str]) -> ModelSpec:
    ours: set[str] = set()
    while len(tokens) > 1 and tokens[-1] in _UPSTREAM_SUFFIXES:
        ours.add(tokens.pop())
    silent = "silent" in ours
    return ModelSpec(requested=name, search="search" in ours or silent, silent=silent, upstream_model="-".join(tokens))


def advertised_models(upstream: Iterable[str] = KNOWN_UPSTREAM_MODELS) -> list[str]:
    """Model ids listed by ``/v1/models``: our ``kimi-*`` names, then the upstream catalogue's ids bare
    (kimi-web-protocol.md C.7), each once, in the order given. An upstream id this module would not pass
    through as itself (``parse_model``) is left out: a listed name is always served as that model."""
    passed = [m for m in upstream if _parse_name(m).upstream_model == m.lower()]
    return list(dict.fromkeys([*ADVERTISED_KIMI_MODELS, *passed]))
