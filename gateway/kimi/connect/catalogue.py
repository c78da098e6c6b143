"""The Connect model catalogue (kimi-web-protocol.md 2.12, C.7): which scenario, upstream model id, agent
id (``kimiplus_id``) and agent mode each model goes out with, and which reasoning efforts it offers.

The values come from ``ConfigService/GetAvailableModels`` of the account's deployment (fetched and cached
by ``catalogue_cache.py``), because hard-coding them breaks at the next rename (C.7: kimi.com's web bundle
sent ``SCENARIO_K2D5`` while the kimi.ai capture sends ``SCENARIO_CHAT``). ``BUILTIN`` is the last
fallback, when no copy was ever fetched: the values this client sent before it read the catalogue.

Pure: no Django, no HTTP.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Source = Literal["upstream", "stale", "builtin"]

AGENT_SCENARIOS = frozenset({"SCENARIO_OK_COMPUTER", "SCENARIO_OK_COMPUTER_SWARM"})
NONE, LOW, HIGH, MAX = (f"REASONING_EFFORT_{e}" for e in ("NONE", "LOW", "HIGH", "MAX"))
EFFORT_ORDER = (NONE, LOW, HIGH, MAX)  # doc 2.6 / 2.12: the enum, from least reasoning to most


@dataclasses.dataclass(frozen=True)
class CatalogueModel:
    """One model of the catalogue. ``efforts`` are the efforts it offers (empty: the catalogue does not
    say, so none is refused); ``kimiplus_id`` and ``agent_mode`` are empty for a plain chat model."""

    id: str
    scenario: str
    kimiplus_id: str = ""
    agent_mode: str = ""
    efforts: tuple[str, ...] = ()
    default_effort: str = ""

    @property
    def agent(self) -> bool:
        return self.scenario in AGENT_SCENARIOS or bool(self.kimiplus_id)

    def cap(self, effort: str) -> str:
        """``effort`` if the model offers it, else the strongest offered effort below it, else the weakest
        offered (doc 2.12 lists the efforts per model; k2d6-chat offers only NONE and LOW, and a model may
        refuse one it does not offer). A model whose efforts are unknown keeps ``effort``, except that an
        agent model gets LOW for NONE: the agent models listed in 2.12 start at LOW."""
        offered = [e for e in EFFORT_ORDER if e in self.efforts]
        if not offered:
            return LOW if self.agent and effort == NONE else effort
        if effort in offered:
            return effort
        rank = EFFORT_ORDER.index(effort) if effort in EFFORT_ORDER else len(EFFORT_ORDER)
        below = [e for e in offered if EFFORT_ORDER.index(e) < rank]
        return below[-1] if below else offered[0]


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The models of one deployment and where the copy came from: ``upstream`` (fetched within the TTL),
    ``stale`` (an older copy, kept because the refetch failed) or ``builtin`` (never fetched).
    ``default_model`` is empty when the upstream should choose (the built-in table sends no model for
    plain requests, as before the catalogue)."""

    models: tuple[CatalogueModel, ...]
    default_scenario: str = "SCENARIO_CHAT"
    default_model: str = ""
    default_agent_model: str = "k3-agent"
    source: Source = "builtin"
    fetched_at: float | None = None

    def model(self, model_id: str) -> CatalogueModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)

    def entry_for(self, *, model: str | None, agent: bool) -> CatalogueModel:
        """What a request goes out as: the named upstream model, else the default agent model for
        Connect's agent scenario, else the catalogue's default (2.12 ``defaultScenario``). An id this
        catalogue lacks is looked up in the built-in table, then read from its name (``guess``)."""
        wanted = model or (self.default_agent_model if agent else self.default_model)
        if not wanted:
            return CatalogueModel(id="", scenario=self.default_scenario)
        return self.model(wanted) or BUILTIN_MODELS.get(wanted) or guess(wanted)


def guess(model_id: str) -> CatalogueModel:
    """An upstream id no catalogue lists (passed through from a client): the rule this client used
    before it read the catalogue. Agent ids (``...-agent...``) get the OK Computer scenario and agent
    fields, a ``-swarm`` id the swarm scenario and ``TYPE_ULTRA``; anything else is a chat model."""
    if model_id.endswith("-swarm"):
        return CatalogueModel(model_id, "SCENARIO_OK_COMPUTER_SWARM", "ok-computer", "TYPE_ULTRA")
    if "-agent" in model_id:
        return CatalogueModel(model_id, "SCENARIO_OK_COMPUTER", "ok-computer", "TYPE_NORMAL")
    return CatalogueModel(model_id, "SCENARIO_CHAT")


# The built-in table: the 2026-09 catalogue of doc 2.12, as hard-coded before the catalogue was read.
BUILTIN = Catalogue(
    models=(
        CatalogueModel("k2d6-chat", "SCENARIO_CHAT", efforts=(NONE, LOW), default_effort=LOW),
        CatalogueModel("k28-agent-preview", "SCENARIO_OK_COMPUTER", "ok-computer", "TYPE_NORMAL"),
        CatalogueModel(
            "k3-agent", "SCENARIO_OK_COMPUTER", "ok-computer", "TYPE_NORMAL", (LOW, HIGH, MAX), default_effort=HIGH
        ),
        CatalogueModel("k3-agent-swarm", "SCENARIO_OK_COMPUTER_SWARM", "ok-computer", "TYPE_ULTRA"),
    ),
)
BUILTIN_MODELS = {m.id: m for m in BUILTIN.models}


def catalogue_from_answer(answer: Any, *, source: Source, fetched_at: float | None) -> Catalogue:
    """The catalogue in a ``GetAvailableModels`` answer (doc 2.12, camelCase; snake_case accepted).
    Raises ValueError when it lists no usable model: a copy without models must not replace one with."""
    if not isinstance(answer, dict):
        raise ValueError("the catalogue answer is not a JSON object")
    raw = _get(answer, "availableModels", "available_models")
    models = tuple(m for m in (_model(item) for item in raw) if m) if isinstance(raw, list) else ()
    if not models:
        raise ValueError("the catalogue answer lists no model")
    default = _get(answer, "defaultScenario", "default_scenario")
    default = default if isinstance(default, dict) else {}
    ids = {m.id for m in models}
    default_model = _text(default.get("model"))
    agent_model = _named(_get(answer, "defaultAgentModel", "default_agent_model"))
    if agent_model not in ids:
        agents = [m.id for m in models if m.agent]
        agent_model = "k3-agent" if "k3-agent" in ids or not agents else agents[0]
    return Catalogue(
        models=models,
        default_scenario=_text(default.get("scenario")) or "SCENARIO_CHAT",
        default_model=default_model if default_model in ids else "",
        default_agent_model=agent_model,
        source=source,
        fetched_at=fetched_at,
    )


def _model(item: Any) -> CatalogueModel | None:
    if not isinstance(item, dict):
        return None
    model_id, scenario = _text(item.get("id")), _text(item.get("scenario"))
    if not model_id or not scenario:
        return None
    options = _get(item, "reasoningEffortOptions", "reasoning_effort_options")
    efforts = [_text(o.get("effort")) for o in options if isinstance(o, dict)] if isinstance(options, list) else []
    return CatalogueModel(
        id=model_id,
        scenario=scenario,
        kimiplus_id=_text(_get(item, "kimiPlusId", "kimiplusId", "kimiplus_id", "kimi_plus_id")),
        agent_mode=_text(_get(item, "agentMode", "agent_mode")),
        efforts=tuple(e for e in efforts if e),
        default_effort=_text(_get(item, "defaultReasoningEffort", "default_reasoning_effort")),
    )


def _get(obj: dict[str, Any], *names: str) -> Any:
    return next((obj[n] for n in names if n in obj), None)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _named(value: Any) -> str:
    """``defaultAgentModel`` seen as an id or as an object naming one (2.12: shape not captured)."""
    if isinstance(value, dict):
        return _text(value.get("model")) or _text(value.get("id"))
    return _text(value)
