"""Reading the ``GetAvailableModels`` answer and choosing a request's entry and effort
(kimi-web-protocol.md 2.12, C.7): pure, no sockets."""

from __future__ import annotations

import pytest

from gateway.kimi.connect.catalogue import (
    BUILTIN,
    HIGH,
    LOW,
    MAX,
    NONE,
    CatalogueModel,
    catalogue_from_answer,
)
from gateway.kimi.fake.connect import MODELS


def test_it_reads_the_2026_09_answer_into_the_built_in_table() -> None:
    # The built-in table is the catalogue of doc 2.12, so the fake's copy of that answer reads back as it
    # (plus where it came from, and the default model the upstream named).
    read = catalogue_from_answer(MODELS, source="upstream", fetched_at=5.0)
    assert read.models == BUILTIN.models
    assert (read.default_scenario, read.default_model, read.default_agent_model) == (
        "SCENARIO_CHAT",
        "k2d6-chat",
        "k3-agent",
    )
    assert (read.source, read.fetched_at) == ("upstream", 5.0)


def test_it_tolerates_snake_case_and_skips_entries_it_cannot_use() -> None:
    answer = {
        "available_models": [
            {"id": "k9-agent", "scenario": "SCENARIO_OK_COMPUTER", "kimiplus_id": "okc", "agent_mode": "TYPE_NORMAL"},
            {"id": "no-scenario"},
            "not an object",
        ],
        "defaultAgentModel": {"model": "k9-agent"},
        "defaultScenario": {"scenario": "SCENARIO_K2D5", "model": "gone"},
    }
    read = catalogue_from_answer(answer, source="upstream", fetched_at=None)
    assert read.models == (CatalogueModel("k9-agent", "SCENARIO_OK_COMPUTER", "okc", "TYPE_NORMAL"),)
    assert (read.default_scenario, read.default_model, read.default_agent_model) == ("SCENARIO_K2D5", "", "k9-agent")


@pytest.mark.parametrize("answer", [[], {}, {"availableModels": []}, {"availableModels": [{"id": "x"}]}])
def test_an_answer_without_a_usable_model_is_refused(answer: object) -> None:
    with pytest.raises(ValueError):
        catalogue_from_answer(answer, source="upstream", fetched_at=None)


def test_an_id_the_catalogue_lacks_comes_from_the_built_in_table_or_its_name() -> None:
    only_chat = catalogue_from_answer(
        {"availableModels": [{"id": "k4-chat", "scenario": "SCENARIO_CHAT"}]}, source="upstream", fetched_at=None
    )
    assert only_chat.entry_for(model="k3-agent", agent=False) == BUILTIN.model("k3-agent")
    assert only_chat.entry_for(model=None, agent=True) == BUILTIN.model("k3-agent")  # no agent model listed
    assert only_chat.entry_for(model="k2d6-agent-ultra-swarm", agent=False).agent_mode == "TYPE_ULTRA"
    assert only_chat.entry_for(model="k7-agent", agent=False).scenario == "SCENARIO_OK_COMPUTER"
    assert only_chat.entry_for(model="k7", agent=False) == CatalogueModel("k7", "SCENARIO_CHAT")
    # No default model named: the upstream chooses (the built-in table's behaviour before the catalogue).
    assert BUILTIN.entry_for(model=None, agent=False) == CatalogueModel("", "SCENARIO_CHAT")


@pytest.mark.parametrize(
    ("offered", "agent", "asked", "sent"),
    [
        ((NONE, LOW), False, HIGH, LOW),
        ((NONE, LOW), False, NONE, NONE),
        ((LOW, HIGH, MAX), True, NONE, LOW),
        ((LOW, MAX), False, HIGH, LOW),
        ((HIGH,), False, LOW, HIGH),
        ((), False, HIGH, HIGH),  # the catalogue says nothing: nothing is refused
        ((), True, NONE, LOW),  # ...except NONE for an agent model (the agents of 2.12 start at LOW)
        (("REASONING_EFFORT_SOMETHING_NEW",), False, HIGH, HIGH),  # efforts it does not know count as unsaid
    ],
)
def test_the_effort_is_capped_to_what_the_model_offers(
    offered: tuple[str, ...], agent: bool, asked: str, sent: str
) -> None:
    model = CatalogueModel("m", "SCENARIO_OK_COMPUTER" if agent else "SCENARIO_CHAT", efforts=offered)
    assert model.cap(asked) == sent
