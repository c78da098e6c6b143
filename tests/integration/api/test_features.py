"""Kimi features through the OpenAI API: history, search, files, images, thinking, agents, limits."""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading

import pytest

from tests.factories import make_api_key
from tests.fixtures_gateway import wait_for_final_log
from tests.integration.api.helpers import client_for, pool_account, setup_pool

PROTOCOLS = ["connect", "legacy"]
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_flattens_the_history_into_one_upstream_message(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    client.chat.completions.create(
        model="kimi",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    )
    (prompt,) = e2e.fake.prompts()
    positions = [prompt.index(part) for part in ("Be brief.", "first question", "first answer", "second question")]
    assert positions == sorted(positions)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_returns_search_results_as_annotations_and_sources(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(
        text="Paris is the capital.",
        search=[
            {"title": "Paris - Wikipedia", "url": "https://en.wikipedia.org/wiki/Paris", "snippet": "", "site": "wiki"}
        ],
    )
    completion = client.chat.completions.create(
        model="kimi-search", messages=[{"role": "user", "content": "capital of France?"}]
    )
    message = completion.choices[0].message
    assert "Paris is the capital" in message.content
    assert "[^1^]" not in message.content
    assert "https://en.wikipedia.org/wiki/Paris" in message.content  # the numbered source list
    urls = [a.url_citation.url for a in message.annotations]
    assert "https://en.wikipedia.org/wiki/Paris" in urls
    chat_call = [c for c in e2e.fake.calls if c.kind in ("chat", "stream")][-1]
    assert "search" in str(chat_call.body).lower()


RAW_MARKER = re.compile("[\ue000-\uf8ff\U0001f6e0\U0001f3a8]|web_search:")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("protocol", "style"), [("connect", "inline"), ("connect", "bare"), ("connect", "article"), ("legacy", "article")]
)
def test_it_turns_2026_citation_markers_into_numbered_citations(e2e, protocol, style, stream):
    """kimi-web-protocol.md C.1: two search calls, each with a result #0, cited in the 2026 forms (legacy: one
    call with both results, as the fake reads them)."""
    client, _ = setup_pool(e2e, protocol=protocol)
    paris = {"title": "Paris forecast", "url": "https://weather.example/paris", "snippet": "晴，21 度", "site": ""}
    lyon = {"title": "Lyon forecast", "url": "https://weather.example/lyon", "snippet": "多云", "site": ""}
    e2e.fake.reply(text="巴黎晴，里昂多云。", searches=[[paris], [lyon]], citations=style, chunk_size=5)
    messages = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    if stream:
        chunks = [c for c in client.chat.completions.create(model="kimi-search", messages=messages, stream=True)]
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        content = "".join(d.content or "" for d in deltas)
        annotations = [a for d in deltas for a in (getattr(d, "annotations", None) or [])]
        spans = [
            (a["url_citation"]["start_index"], a["url_citation"]["end_index"], a["url_citation"]["url"])
            for a in annotations
        ]
    else:
        message = client.chat.completions.create(model="kimi-search", messages=messages).choices[0].message
        content = message.content
        spans = [
            (a.url_citation.start_index, a.url_citation.end_index, a.url_citation.url) for a in message.annotations
        ]
    assert content.startswith("巴黎晴，里昂多云。 [1][2]\n\nSources:\n[1] Paris forecast")
    assert not RAW_MARKER.search(content)
    cited = [(content[start:end], url) for start, end, url in spans if end - start == 3]
    assert cited == [("[1]", paris["url"]), ("[2]", lyon["url"])]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_keeps_the_source_list_out_with_silent_search(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="Answer.", search=[{"title": "T", "url": "https://example.org/a", "snippet": "", "site": ""}])
    completion = client.chat.completions.create(model="kimi-silent", messages=[{"role": "user", "content": "q"}])
    assert "https://example.org/a" not in completion.choices[0].message.content
    assert [a.url_citation.url for a in completion.choices[0].message.annotations] == ["https://example.org/a"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_sends_thinking_as_reasoning_content(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="42.", thinking="Let me think about it carefully.")
    completion = client.chat.completions.create(model="kimi-thinking", messages=[{"role": "user", "content": "q"}])
    message = completion.choices[0].message
    assert message.content == "42."
    assert message.model_extra["reasoning_content"] == "Let me think about it carefully."

    stream = client.chat.completions.create(
        model="kimi-thinking", messages=[{"role": "user", "content": "q"}], stream=True
    )
    chunks = [c for c in stream if c.choices]
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    assert reasoning == "Let me think about it carefully."


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
def test_it_hides_and_counts_reasoning_the_client_did_not_ask_for(e2e, protocol, stream):
    # kimi-web-protocol.md C.6: the upstream may reason anyway; it is dropped and counted in the log.
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="42.", thinking="Unasked reasoning.")
    e2e.fake.fault("stray_thinking")
    raw = client.chat.completions.with_raw_response.create(
        model="kimi", messages=[{"role": "user", "content": "q"}], stream=stream
    )
    if stream:
        chunks = [c for c in raw.parse() if c.choices]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "42."
        assert not any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks)
    else:
        message = raw.parse().choices[0].message
        assert message.content == "42." and not (message.model_extra or {}).get("reasoning_content")
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert f"dropped_reasoning:{len('Unasked reasoning.')}" in log.flags


@pytest.mark.parametrize(("effort", "shown"), [("low", True), ("none", False)])
def test_it_takes_the_reasoning_effort_of_the_request(e2e, effort, shown):
    client, _ = setup_pool(e2e, protocol="connect")
    e2e.fake.reply(text="42.", thinking="Reasoned.")
    raw = client.chat.completions.with_raw_response.create(
        model="kimi-thinking", messages=[{"role": "user", "content": "q"}], reasoning_effort=effort
    )
    message = raw.parse().choices[0].message
    assert (message.model_extra or {}).get("reasoning_content") == ("Reasoned." if shown else None)
    options = [c for c in e2e.fake.calls if c.kind == "chat"][-1].body["options"]
    assert options["reasoning_effort"] == f"REASONING_EFFORT_{effort.upper()}"
    assert f"effort:{effort}" in wait_for_final_log(raw.headers["x-request-id"]).flags


def test_it_wraps_thinking_in_think_tags_on_request(e2e):
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="42.", thinking="Hmm.")
    completion = client.chat.completions.create(
        model="kimi-thinking",
        messages=[{"role": "user", "content": "q"}],
        extra_body={"reasoning_format": "think_tags"},
    )
    assert completion.choices[0].message.content.startswith("<think>")
    assert completion.choices[0].message.content.rstrip().endswith("42.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_uploads_a_base64_image(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    completion = client.chat.completions.create(
        model="kimi",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content
    uploaded = [f.data for f in e2e.fake.files.values()]
    assert PNG in uploaded


class _FileHandler(http.server.BaseHTTPRequestHandler):
    body = b"%PDF-1.4 a tiny document about otters"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_uploads_a_file_by_url(e2e, protocol, file_server, settings):
    settings.KIMIPROXY_FETCH_ALLOW = ["127.0.0.1"]
    client, _ = setup_pool(e2e, protocol=protocol)
    completion = client.chat.completions.create(
        model="kimi",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "summarise"},
                    {"type": "file", "file_url": {"url": f"{file_server}/otters.pdf"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content
    assert _FileHandler.body in [f.data for f in e2e.fake.files.values()]


def test_it_refuses_a_file_url_on_a_private_address_by_default(e2e, file_server):
    client, _ = setup_pool(e2e)
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="kimi",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "summarise"},
                        {"type": "file", "file_url": {"url": f"{file_server}/otters.pdf"}},
                    ],
                }
            ],
        )
    assert caught.value.body["param"].startswith("messages[0].content[1]")
    assert e2e.fake.count("chat") + e2e.fake.count("stream") == 0


def test_it_uses_a_legacy_kimi_plus_agent(e2e):
    client, _ = setup_pool(e2e, protocol="legacy")
    agent = "crm40ee9e5jvhsn7ptcg"
    completion = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "hi"}])
    assert completion.model == agent
    create = [c for c in e2e.fake.calls if c.kind in ("create_chat", "stream")]
    assert any(agent in str(c.body) for c in create)


def test_it_uses_the_connect_agent_scenario_on_a_paid_account(e2e):
    pool_account(e2e.fake, "paid", protocol="connect", paid=True)
    _, raw = make_api_key()
    client = client_for(e2e.url, raw)
    completion = client.chat.completions.create(model="kimi-agent", messages=[{"role": "user", "content": "build"}])
    assert completion.choices[0].message.content
    chat = [c for c in e2e.fake.calls if c.kind == "chat"][-1]
    assert "SCENARIO_OK_COMPUTER" in str(chat.body)


def test_it_answers_a_clear_error_when_no_account_may_use_the_agent(e2e):
    client, _ = setup_pool(e2e, protocol="connect")  # a free account
    import openai

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="kimi-agent", messages=[{"role": "user", "content": "build"}])
    assert caught.value.status_code in (400, 403, 429)
    assert caught.value.body["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_stops_at_max_tokens(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="word " * 200, chunk_size=10)
    completion = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "long"}], max_tokens=10
    )
    assert completion.choices[0].finish_reason == "length"
    assert len(completion.choices[0].message.content) < 100


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_it_cuts_at_a_stop_sequence_across_chunks(e2e, protocol):
    client, _ = setup_pool(e2e, protocol=protocol)
    e2e.fake.reply(text="alpha beta STOP gamma", chunks=["alpha be", "ta ST", "OP gamma"])
    stream = client.chat.completions.create(
        model="kimi", messages=[{"role": "user", "content": "x"}], stop=["STOP"], stream=True
    )
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "alpha beta "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_it_logs_an_unknown_model_and_echoes_it(e2e):
    client, _ = setup_pool(e2e)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert raw.parse().model == "gpt-4o"
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert log.model == "gpt-4o" and "unknown_model" in log.flags


def test_it_logs_flags_the_protocol_ignores(e2e):
    client, _ = setup_pool(e2e, protocol="connect")
    raw = client.chat.completions.with_raw_response.create(
        model="kimi-research", messages=[{"role": "user", "content": "x"}]
    )
    log = wait_for_final_log(raw.headers["x-request-id"])
    assert "research" in log.flags and "ignored:research" in log.flags


def test_it_sends_keep_alive_comments_during_long_silences(e2e, settings):
    import httpx

    settings.KIMIPROXY_KEEPALIVE_SECONDS = 0.2
    client, _ = setup_pool(e2e)
    e2e.fake.reply(text="after the pause")
    e2e.fake.fault("stall", interval=0.3, duration=1.0)
    response = httpx.post(
        f"{e2e.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "kimi", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=20,
    )
    assert ": keep-alive" in response.text
    assert response.headers["X-Accel-Buffering"] == "no"
    payloads = [line[6:] for line in response.text.split("\n") if line.startswith("data: {")]
    text = "".join(
        json.loads(p)["choices"][0]["delta"].get("content") or "" for p in payloads if json.loads(p)["choices"]
    )
    assert text == "after the pause"
