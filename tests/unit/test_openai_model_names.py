"""Model names -> flags, agent ids and upstream models."""

from __future__ import annotations

import pytest

from gateway.openai.model_names import ModelSpec, advertised_models, parse_aliases, parse_model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kimi", {}),
        ("kimi-search", {"search": True}),
        ("kimi-thinking", {"thinking": True}),
        ("kimi-k1", {"thinking": True}),
        ("k1", {"thinking": True}),
        ("kimi-search-thinking", {"search": True, "thinking": True}),
        ("kimi-thinking-search", {"search": True, "thinking": True}),
        ("KIMI-Thinking-SEARCH", {"search": True, "thinking": True}),
        ("kimi-research", {"research": True}),
        ("kimi-math", {"math": True}),
        ("kimi-silent", {"search": True, "silent": True}),
        ("kimi-search-silent", {"search": True, "silent": True}),
        ("kimi-silent_search", {"search": True, "silent": True}),
        ("kimi-k1-search", {"search": True, "thinking": True}),
        ("kimi-agent", {"agent_id": "kimi-agent"}),
        ("crm40ee9e5jvhsn7ptcg", {"agent_id": "crm40ee9e5jvhsn7ptcg"}),
        ("k2d6-chat", {"upstream_model": "k2d6-chat"}),
        ("k3-agent-swarm", {"upstream_model": "k3-agent-swarm"}),
        ("K2D6-chat-search", {"upstream_model": "k2d6-chat", "search": True}),
        ("k2d6-thinking", {"upstream_model": "k2d6-thinking"}),
        ("gpt-4o", {"unknown": True}),
        ("kimi-latest", {"unknown": True}),
        ("kimi-search-turbo", {"unknown": True}),
        ("crm40ee9e5jvhsn7ptc", {"unknown": True}),  # 19 characters is not an agent id
    ],
)
def test_it_reads_flags_from_the_name(name: str, expected: dict[str, object]) -> None:
    assert parse_model(name) == ModelSpec(requested=name, **expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("kimi-thinking-search", "kimi-search-thinking"),
        ("Kimi-Silent", "kimi-search-silent"),
        ("kimi-k1", "kimi-thinking"),
        ("kimi-agent-search", "kimi-search-agent"),
        ("k2d6-chat-silent", "k2d6-chat-search-silent"),
        ("GPT-4o", "gpt-4o"),
        ("crm40ee9e5jvhsn7ptcg", "crm40ee9e5jvhsn7ptcg"),
    ],
)
def test_it_gives_one_canonical_name_per_behaviour(name: str, canonical: str) -> None:
    assert parse_model(name).canonical == canonical


def test_it_echoes_the_name_as_sent() -> None:
    assert parse_model(" Kimi-Search ").requested == " Kimi-Search "
    assert parse_model(" Kimi-Search ").search


def test_it_labels_flags_for_the_log() -> None:
    assert parse_model("kimi-silent").flags == ["search", "silent"]
    assert parse_model("k3-agent").flags == ["model:k3-agent"]
    assert parse_model("gpt-4o").flags == ["unknown_model"]


def test_it_builds_the_upstream_turn() -> None:
    turn = parse_model("k2d6-chat-search").turn_request(text="hi", chat_id="c1", parent_id="m1")
    assert (turn.text, turn.search, turn.thinking, turn.model, turn.chat_id, turn.parent_id) == (
        "hi",
        True,
        False,
        "k2d6-chat",
        "c1",
        "m1",
    )
    assert parse_model("kimi-agent").turn_request(text="x").agent_id == "kimi-agent"


def test_it_advertises_only_names_it_understands() -> None:
    names = advertised_models()
    assert names[0] == "kimi"
    assert {"kimi-search-thinking", "kimi-silent", "kimi-agent", "k2d6-chat"} <= set(names)
    assert len(names) == len(set(names))
    assert not any(parse_model(n).unknown for n in names)
    assert all(parse_model(n).canonical in names or n == "kimi-silent" for n in names)


def test_it_advertises_catalogue_ids_bare_once_each_and_only_those_it_passes_through() -> None:
    # kimi-web-protocol.md C.7: the ids of the deployments' catalogues, merged, beside our names.
    names = advertised_models(["k4-chat", "k2d6-chat", "k4-chat", "kimi", "k4-search", "moonshot-v9"])
    assert names[-2:] == ["k4-chat", "k2d6-chat"] and names.count("kimi") == 1
    assert "k4-search" not in names  # would be served as k4 with search, not as itself
    assert "moonshot-v9" not in names  # not an upstream id to this gateway: served by the default model


def test_an_alias_serves_a_name_and_its_dated_ids_as_the_target():
    aliases = parse_aliases("claude-opus-4=kimi-thinking, claude=kimi ,gpt-4o=kimi-search")
    assert aliases[0] == ("claude-opus-4", "kimi-thinking")  # the longest alias is tried first
    spec = parse_model("Claude-Opus-4-20250514", aliases=aliases)
    assert (spec.requested, spec.served, spec.thinking, spec.alias) == (
        "Claude-Opus-4-20250514",
        "kimi-thinking",
        True,
        "claude-opus-4",
    )
    assert parse_model("claude-haiku-4-5", aliases=aliases).served == "kimi"
    assert parse_model("gpt-4o-mini", aliases=aliases).search is True
    assert parse_model("mistral", aliases=aliases).served == "kimi"  # unknown: the default answers
    assert parse_model("kimi-search", aliases=aliases).flags == ["search"]  # no alias: no served flag


@pytest.mark.parametrize("text", ["claude", "=kimi", "claude=", "a=b,,c"])
def test_a_bad_alias_list_names_the_entry(text):
    if text == "a=b,,c":  # an empty entry is skipped; "c" is the bad one
        with pytest.raises(ValueError, match="'c'"):
            parse_aliases(text)
        return
    with pytest.raises(ValueError, match="name=target"):
        parse_aliases(text)
