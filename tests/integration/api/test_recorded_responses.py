"""The API answers byte for byte as recorded, for the same scripted fake-Kimi replies.

Issue 13 moves and reshapes the request path with the constraint that the responses stay the same. The
transcripts in tests/fixtures/recorded/ were recorded on the code before that move: each case sends raw
HTTP requests, and its transcript holds the status, the headers clients rely on and the exact body of
every answer (SSE bodies event by event), with ids, ``created`` and timings masked (see the README
there). Every run replays the requests and compares the transcript exactly; a missing transcript fails.

Re-record only when a change of answer is intended: ``KIMIPROXY_RECORD_RESPONSES=1 pytest <this file>``,
then review the diff of the transcripts. /v1/models is recorded by status and content-type only: issue
14 changes its body on purpose.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_api_key
from tests.integration.api.recorded import Api

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "recorded"
RECORDING = os.environ.get("KIMIPROXY_RECORD_RESPONSES") == "1"
PROTOCOLS = ("connect", "legacy")
# Characters JSON escapes or may escape (quote, backslash, tab, non-ASCII, astral): pins ensure_ascii.
ANSWER = 'Grüße, 世界 — "quoted" \\ and\ttab 🙂.'
SEARCH = [
    {"title": "Paris - Wikipedia", "url": "https://en.wikipedia.org/wiki/Paris", "snippet": "", "site": "wiki"},
    {"title": "Paris  travel\nguide", "url": "https://example.org/paris", "snippet": "Visit", "site": "ex"},
]

CASES: dict[str, Callable[[Api], None]] = {}


def case(*protocols: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``case_<name>`` once, or once per protocol as ``<name>-<protocol>``."""

    def register(run: Callable[..., None]) -> Callable[..., None]:
        name = run.__name__.removeprefix("case_")
        for protocol in protocols:
            CASES[f"{name}-{protocol}"] = functools.partial(run, protocol=protocol)
        if not protocols:
            CASES[name] = run
        return run

    return register


both = case(*PROTOCOLS)


def ask(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "kimi", "messages": [{"role": "user", "content": text}], **extra}


# ---- answers, both upstream protocols


@both
def case_plain(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text=ANSWER, chunk_size=5)
    api.chat(ask())


@both
def case_plain_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text=ANSWER, chunk_size=5)
    api.chat(ask(stream=True))


@both
def case_plain_stream_usage(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="One two three four five.", chunk_size=4)
    api.chat(ask("count", stream=True, stream_options={"include_usage": True}))


@both
def case_search(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="Paris is the capital. It is on the Seine.", chunk_size=6, search=SEARCH)
    api.chat(ask("capital of France?", model="kimi-search"))


@both
def case_search_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="Paris is the capital. It is on the Seine.", chunk_size=6, search=SEARCH)
    api.chat(ask("capital of France?", model="kimi-search", stream=True))


@both
def case_thinking(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="42.", thinking="Let me think about it carefully.", chunk_size=7)
    api.chat(ask("q", model="kimi-thinking"))


@both
def case_thinking_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="42.", thinking="Let me think about it carefully.", chunk_size=7)
    api.chat(ask("q", model="kimi-thinking", stream=True))


@both
def case_think_tags(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="42.", thinking="Hmm, six times seven.", chunk_size=7)
    api.chat(ask("q", model="kimi-thinking", reasoning_format="think_tags"))


@both
def case_think_tags_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="42.", thinking="Hmm, six times seven.", chunk_size=7)
    api.chat(ask("q", model="kimi-thinking", reasoning_format="think_tags", stream=True))


@both
def case_max_tokens(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="word " * 60, chunk_size=10)
    api.chat(ask("long", max_tokens=10))


@both
def case_max_tokens_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="word " * 60, chunk_size=10)
    api.chat(ask("long", max_tokens=10, stream=True))


@both
def case_stop(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(chunks=["alpha be", "ta ST", "OP gamma"])
    api.chat(ask("x", stop=["STOP"]))


@both
def case_stop_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(chunks=["alpha be", "ta ST", "OP gamma"])
    api.chat(ask("x", stop=["STOP"], stream=True))


def _continue(conversation_id: str, *, stream: bool) -> dict[str, Any]:
    history = [
        {"role": "user", "content": "remember 7"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "what number?"},
    ]
    return {"model": "kimi", "messages": history, "conversation_id": conversation_id, "stream": stream}


@both
def case_conversation(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="first answer", times=1)
    api.fake.reply(text="second answer", times=1)
    first = api.chat(ask("remember 7", conversation_id="new"))
    api.chat(_continue(first.json()["conversation_id"], stream=False))


@both
def case_conversation_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="first answer", times=1)
    api.fake.reply(text="second answer", times=1)
    first = api.chat(ask("remember 7", conversation_id="new", stream=True))
    api.chat(_continue(first.headers["x-conversation-id"], stream=True))


@both
def case_passthrough(api: Api, protocol: str) -> None:
    api.bearers["kimi token"] = api.fake.mint_account("pt", protocol=protocol).refresh_token
    api.fake.reply(text="through", chunk_size=3)
    api.chat(ask(), auth="kimi token")


# ---- upstream failures


@both
def case_failover(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.fault("http_5xx", account="first")
    api.fake.reply(text="served by the second account")
    api.chat(ask())


@both
def case_failover_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.fault("http_5xx", account="first")
    api.fake.reply(text="served by the second account")
    api.chat(ask(stream=True))


@both
def case_all_attempts_fail(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.fault("http_5xx", times=None)
    api.chat(ask())


@both
def case_all_attempts_fail_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.fault("http_5xx", times=None)
    api.chat(ask(stream=True))


@both
def case_upstream_rate_limited(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.fault("rate_limited", times=None, retry_after=120)
    api.chat(ask())


@both
def case_mid_stream_cut(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol, accounts=2)
    api.fake.reply(text="partial answer that will be cut", chunk_size=4)
    api.fake.fault("cut", after_events=8)
    api.chat(ask(stream=True))


@both
def case_content_filter(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="Something the filter dislikes.", chunk_size=6)
    api.fake.fault("content_filter", after_events=2)
    api.chat(ask())


@both
def case_content_filter_stream(api: Api, protocol: str) -> None:
    api.pool(protocol=protocol)
    api.fake.reply(text="Something the filter dislikes.", chunk_size=6)
    api.fake.fault("content_filter", after_events=2)
    api.chat(ask(stream=True))


# ---- refusals (no upstream call, so one protocol)


@case()
def case_bad_json(api: Api) -> None:
    api.pool()
    api.send("POST", "/v1/chat/completions", raw=b"{not json")


@case()
def case_missing_messages(api: Api) -> None:
    api.pool()
    api.chat({"model": "kimi"})


@case()
def case_n_above_one(api: Api) -> None:
    api.pool()
    api.chat(ask(n=2))


@case()
def case_unknown_content_part(api: Api) -> None:
    api.pool()
    api.chat({"model": "kimi", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})


@case()
def case_stream_not_bool(api: Api) -> None:
    api.pool()
    api.chat(ask(stream="yes"))


@case()
def case_key_missing(api: Api) -> None:
    api.pool()
    api.chat(ask(), auth="none")


@case()
def case_key_unknown(api: Api) -> None:
    api.pool()
    api.bearers["unknown key"] = "sk-kp-nope"
    api.chat(ask(), auth="unknown key")


@case()
def case_key_revoked(api: Api) -> None:
    api.pool()
    api.bearers["revoked key"] = make_api_key(revoked=True)[1]
    api.chat(ask(), auth="revoked key")


@case()
def case_model_not_allowed(api: Api) -> None:
    api.pool()
    api.bearers["kimi-only key"] = make_api_key(allowed_models=["kimi"])[1]
    api.chat(ask(model="kimi-thinking"), auth="kimi-only key")


@case()
def case_conversation_unknown(api: Api) -> None:
    api.pool()
    api.chat(ask(conversation_id="no-such-conversation"))


@case()
def case_unknown_path(api: Api) -> None:
    api.pool()
    api.send("POST", "/v1/embeddings", body={})
    api.send("GET", "/v1/émbeddings", auth="none")  # a non-ASCII path in the message
    api.send("GET", "/token/nope", auth="none")


@case()
def case_wrong_method(api: Api) -> None:
    api.send("GET", "/v1/chat/completions", auth="none")
    api.send("GET", "/token/check", auth="none")


@case()
def case_too_large(api: Api) -> None:
    api.pool()
    api.settings.KIMIPROXY_MAX_BODY_BYTES = 1000
    api.chat(ask("x" * 5000))


@case()
def case_key_rpm_limit(api: Api) -> None:
    api.pool()
    api.bearers["key"] = make_api_key(rpm=1)[1]
    api.mask_also(r"(retry-after: )\d+", r"\1<seconds>")  # seconds until the minute's window frees
    api.chat(ask())
    api.chat(ask())


@case()
def case_pool_exhausted(api: Api) -> None:
    api.pool(accounts=2, limit=1)
    # Counted from the first turn of the 3-hour window, so from the clock.
    api.mask_also(r"(retry-after: )\d+", r"\1<seconds>")
    for i in range(3):
        api.chat(ask(str(i)))


# ---- the small endpoints


@case()
def case_token_check(api: Api) -> None:
    live = api.fake.mint_account("live", protocol="connect").refresh_token
    dead = api.fake.mint_account("dead", protocol="connect").refresh_token
    api.fake.revoke_refresh("dead")
    api.send("POST", "/token/check", body={"token": live}, auth="none")
    api.send("POST", "/token/check", body={"token": dead}, auth="none")
    api.send("POST", "/token/check", body={}, auth="none")
    api.send("POST", "/token/check", raw=b"{oops", auth="none")


@case()
def case_ping_and_health(api: Api) -> None:
    for path in ("/ping", "/healthz", "/readyz"):
        api.send("GET", path, auth="none")


@case()
def case_models(api: Api) -> None:
    api.pool()
    for path in ("/v1/models", "/v1/models/kimi-search", "/v1/models/nope-model"):
        api.send("GET", path)
    api.send("GET", "/v1/models", auth="none")


# ---- the tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_api_answers_as_recorded(e2e: Any, settings: Any, name: str) -> None:
    api = Api(url=e2e.url, fake=e2e.fake, settings=settings)
    CASES[name](api)
    actual = api.transcript()
    path = RECORDED / f"{name}.txt"
    if RECORDING:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode())
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: record it with KIMIPROXY_RECORD_RESPONSES=1 (see this module's docstring)")
    expected = path.read_bytes().decode()
    if actual != expected:
        pytest.fail(_explain(expected, actual, path.name), pytrace=False)


def test_every_recording_has_its_case() -> None:
    """A renamed or deleted case leaves no transcript behind that nothing compares any more."""
    orphans = sorted({p.stem for p in RECORDED.glob("*.txt")} - set(CASES))
    assert not orphans, f"transcripts no case records any more: {orphans}"


def _explain(expected: str, actual: str, name: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
    at = min(len(expected), len(actual)) if at is None else at
    diff = difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True), "recorded", "now", n=2
    )
    return (
        f"The answers differ from {name} (first at character {at}: recorded {expected[at : at + 40]!r}, "
        f"now {actual[at : at + 40]!r}).\n" + "".join(diff)
    )
