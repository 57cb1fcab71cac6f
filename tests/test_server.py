"""`rag serve`: the OpenAI-compatible HTTP door over the same pipeline.

The fast tests drive the FastAPI app in-process (TestClient) over an engine with the mock
LLM; the `server` tests start a real `rag serve` on a loopback port and talk to it with the
official `openai` client and with curl.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import SEED_A, SEED_B, SEEDS, free_port, start_llama_server
from rag.backends import ExtractiveMockLLM
from rag.citations import REFUSAL
from rag.engine import build_engine
from rag.errors import BackendError, ConfigError
from rag.server import RateLimiter, create_app

MEET = "Who will meet in Moscow next week, according to Putin?"
ELSEWHERE = "What is the boiling point of liquid nitrogen in kelvin?"
KEY = "test-key-0123456789"
MARKER = re.compile(r"\[\d+\]")


def user(text: str) -> dict:
    return {"model": "rag", "messages": [{"role": "user", "content": text}]}


def wait_ready(client: TestClient, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.05)


@pytest.fixture
def serve(make_settings, embedder):
    """A running app over a mock engine: serve(**server_settings, llm=…, judge=…) -> TestClient."""
    clients = []

    def start(llm=None, judge=None, factory=None, ready: bool = True, **server) -> TestClient:
        engine = build_engine(make_settings(server=server), llm=llm, embed_model=embedder, judge=judge)
        if factory is not None:  # an LLM that loads slowly, or fails to
            engine.llm_factory = factory
        client = TestClient(create_app(engine, engine.settings), raise_server_exceptions=False)
        client.engine = engine  # for a test to hand it a broken part
        clients.append(client.__enter__())
        if ready:
            wait_ready(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def events(body: str) -> list:
    """The `data:` payloads of a server-sent event stream, JSON-decoded ([DONE] kept as a string)."""
    payloads = [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def streamed(client: TestClient, request: dict, **kwargs) -> tuple[httpx.Response, list]:
    response = client.post("/v1/chat/completions", json={**request, "stream": True}, **kwargs)
    return response, events(response.text)


def assert_error(response: httpx.Response, status: int, says: str) -> dict:
    """An OpenAI-style error body with the status, the words a user needs, and no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says in error["message"] and "Traceback" not in response.text
    return error


# ---- answers ----


def test_a_chat_completion_is_the_cited_answer_with_its_citations(serve):
    response = serve().post("/v1/chat/completions", json=user(MEET))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "rag" and data["id"].startswith("chatcmpl-")
    content = data["choices"][0]["message"]["content"]
    assert "deputy prime ministers" in content and MARKER.search(content)
    assert data["choices"][0]["finish_reason"] == "stop" and data["choices"][0]["message"]["role"] == "assistant"
    assert data["refused"] is False and data["answer"] == content
    [citation] = {c["n"]: c for c in data["citations"]}.values()
    assert citation["source"] == SEED_A and citation["verified"] and f"[{citation['n']}]" in content
    assert data["sentences"][0]["supported"] and data["support_check"]


def test_earlier_messages_are_the_history_of_a_follow_up(serve):
    request = {"model": "rag", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},  # left out: the pipeline's prompt is fixed
        {"role": "user", "content": "What did Pashinyan say Armenia was ready to unblock?"},
        {"role": "assistant", "content": "Transport links."},
        {"role": "user", "content": [{"type": "text", "text": "What did he say about progress?"}]},
    ]}
    data = serve().post("/v1/chat/completions", json=request).json()
    assert not data["refused"] and "progress" in data["answer"]


def test_a_question_the_documents_do_not_answer_is_refused(serve):
    client = serve()
    data = client.post("/v1/chat/completions", json=user(ELSEWHERE)).json()
    assert data["refused"] is True and data["choices"][0]["message"]["content"] == REFUSAL
    assert data["citations"] == [] and data["refusal_reason"] == "nothing relevant retrieved"
    _, chunks = streamed(client, user(ELSEWHERE))
    assert chunks[-2]["refused"] is True and chunks[-2]["answer"] == REFUSAL


def test_a_stream_sends_the_draft_then_the_final_answer_and_its_citations_in_the_last_chunk(serve):
    client = serve()
    response, chunks = streamed(client, user(MEET))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert chunks[-1] == "[DONE]"
    *parts, final = chunks[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == final["id"] for c in chunks[:-1])
    assert parts[0]["choices"][0]["delta"]["role"] == "assistant"
    draft = "".join(c["choices"][0]["delta"]["content"] for c in parts)
    assert len(parts) > 3 and "deputy prime ministers" in draft  # token by token, as the model wrote it
    assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"]["content"] is None
    whole = client.post("/v1/chat/completions", json=user(MEET)).json()
    assert final["answer"] == whole["answer"] and MARKER.search(final["answer"])  # the text to keep carries the markers
    assert final["citations"] == whole["citations"] and final["refused"] is False
    assert re.sub(r" ?\[\d+\]", "", final["answer"]) == draft.strip()  # the markers are what the check adds


def test_a_streamed_draft_the_passages_do_not_support_is_withdrawn_in_the_stream(serve):
    client = serve(judge=lambda messages: 0.1)  # the entailment judge doubts every sentence
    _, chunks = streamed(client, user(MEET))
    final = chunks[-2]
    assert final["refused"] is True and final["answer"] == REFUSAL and "do not state" in final["refusal_reason"]
    shown = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks[:-2])
    draft, withdrawal = shown.split("\n\n", 1)
    assert "deputy prime ministers" in draft
    assert withdrawal.startswith(REFUSAL) and "the draft above was withheld" in withdrawal  # what a plain client shows


def test_models_lists_the_pipeline_and_the_docs_describe_the_api(serve):
    client = serve()
    data = client.get("/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["rag"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/ingest", "/healthz", "/readyz"} <= set(paths)


def test_ingest_reports_changes_and_a_new_document_is_answerable_at_once(serve, corpus):
    client = serve()
    report = client.post("/v1/ingest").json()
    assert report["added"] == [] and sorted(report["unchanged"]) == sorted(p.name for p in SEEDS.iterdir())
    (corpus / "ferry.txt").write_text("The Kessel ferry leaves the harbour of Brindle every Tuesday at seven.\n")
    (corpus / "001_1f22d8ffd3c24c03.txt").unlink()
    (corpus / "junk.txt").write_bytes(b"\x00\x01binary")
    report = client.post("/v1/ingest", json={}).json()
    assert report["added"] == ["ferry.txt"] and report["removed"] == [SEED_B]
    [skipped] = report["skipped"]
    assert skipped["file"] == "junk.txt" and skipped["reason"].startswith("junk.txt: looks binary")
    data = client.post("/v1/chat/completions", json=user("When does the Kessel ferry leave Brindle?")).json()
    assert not data["refused"] and "Tuesday" in data["answer"] and data["citations"][0]["source"] == "ferry.txt"
    assert client.post("/v1/ingest", json={"rebuild": True}).json()["rebuilt"] is True


def test_concurrent_requests_are_all_answered(serve):
    client = serve(max_concurrent=2)  # more requests than slots: the others wait their turn

    def one(i: int) -> str:
        if i % 2:
            return streamed(client, user(MEET))[1][-2]["answer"]
        return client.post("/v1/chat/completions", json=user(MEET)).json()["answer"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert len(set(answers)) == 1 and MARKER.search(answers[0])


def test_a_client_that_leaves_mid_stream_frees_the_model_and_its_slot(serve):
    """As uvicorn reports it (ASGI 2.3): an http.disconnect while the answer streams."""
    client = serve(max_concurrent=1)
    body = json.dumps({**user(MEET), "stream": True}).encode()
    sent: list[bytes] = []

    async def leave_after_two_events() -> None:
        gone, calls = anyio.Event(), 0

        async def receive() -> dict:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                sent.append(message["body"])
                if len(sent) == 2:
                    gone.set()
                    await anyio.sleep(0.2)  # the client is gone before the next event

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 9),
                 "server": ("127.0.0.1", 80)}
        await client.app(scope, receive, send)

    client.portal.call(leave_after_two_events)
    assert len(sent) == 2 and b"[DONE]" not in b"".join(sent)  # it left mid-answer
    lock = client.engine.generation_lock
    assert lock.acquire(timeout=5), "the model's lock was kept by the abandoned answer"
    lock.release()
    assert not client.app.state.door.slots.locked()  # its slot was given back
    assert client.post("/v1/chat/completions", json=user(MEET)).status_code == 200


# ---- bad requests ----


@pytest.mark.parametrize("body, says", [
    (b'{"model": "rag", "messages": [', "not valid JSON"),
    (b'{"model": "rag"}', "messages: Field required"),
    (b'{"model": "rag", "messages": []}', "messages: List should have at least 1 item"),
    (b'{"model": "rag", "messages": [{"role": "wizard", "content": "hi"}]}', "messages.0.role"),
    (b'{"model": "rag", "messages": [{"role": "system", "content": "Be brief."}]}', "must end with a user message"),
    (b'{"model": "rag", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
     "must end with a user message"),
    (b'{"model": "rag", "messages": [{"role": "user", "content": "  \\u0000 "}]}', "The question is empty"),
])
def test_a_malformed_chat_request_is_a_400_that_says_what_is_wrong(serve, body, says):
    response = serve().post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert assert_error(response, 400, says)["type"] == "invalid_request_error"


def test_an_overlong_question_is_refused_not_cut(serve):
    response = serve().post("/v1/chat/completions", json=user("why " * 600))
    error = assert_error(response, 400, "at most 2,000 are accepted")
    assert error["code"] == "question_too_long" and error["param"] == "messages"


def test_an_unknown_model_or_path_is_a_404(serve):
    client = serve()
    assert assert_error(client.post("/v1/chat/completions", json={**user(MEET), "model": "gpt-4"}), 404, "serves 'rag'")["code"] \
        == "model_not_found"
    assert_error(client.get("/v1/nothing"), 404, "Not Found: GET /v1/nothing")


def test_a_request_body_over_the_limit_is_a_413_with_or_without_a_length(serve):
    client = serve(max_request_bytes=2048)
    big = json.dumps(user("x " * 1500)).encode()
    too_large = client.post("/v1/chat/completions", content=big)
    assert assert_error(too_large, 413, "larger than 2,048 bytes")["code"] == "request_too_large"
    assert too_large.headers["x-content-type-options"] == "nosniff"
    chunked = client.post("/v1/chat/completions", content=iter([big[:1500], big[1500:]]))  # no Content-Length
    assert "content-length" not in chunked.request.headers
    assert_error(chunked, 413, "larger than 2,048 bytes")
    assert client.post("/v1/chat/completions", json=user(MEET)).status_code == 200


def test_responses_are_json_never_markup(serve, corpus):
    client = serve()
    (corpus / "page.txt").write_text('The Brindle harbour master is Orla Quent of "Quent & Sons" (1 < 2 > 0).\n')
    client.post("/v1/ingest")
    response = client.post("/v1/chat/completions", json=user("Who is the Brindle harbour master?"))
    assert response.headers["content-type"] == "application/json" and response.headers["x-content-type-options"] == "nosniff"
    assert '"Quent & Sons" (1 < 2 > 0)' in response.json()["citations"][0]["text"]  # the text as it is, in a JSON string
    stream, _ = streamed(client, user(MEET))
    assert stream.headers["x-content-type-options"] == "nosniff"


# ---- keys and rates ----


def test_with_keys_every_v1_request_needs_one(serve):
    client = serve(api_keys=[KEY, "second-key-abcdef"])
    for response in (client.get("/v1/models"), client.post("/v1/chat/completions", json=user(MEET)), client.post("/v1/ingest"),
                     client.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
                     client.get("/v1/models", headers={"Authorization": f"Basic {KEY}"})):
        assert assert_error(response, 401, "Authorization: Bearer <key>")["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/models", headers={"Authorization": "Bearer second-key-abcdef"}).status_code == 200
    ok = client.post("/v1/chat/completions", json=user(MEET), headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and not ok.json()["refused"]
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200  # probes need no key


def test_keys_can_come_from_a_file(serve, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the team\nfile-key-1\n\n  file-key-2  \n")
    client = serve(api_keys_file=str(keys))
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer file-key-2"}).status_code == 200


def test_each_key_has_its_own_rate_limit(serve):
    client = serve(api_keys=["key-one", "key-two"], rate_limit_per_minute=2)
    one, two = ({"Authorization": f"Bearer {k}"} for k in ("key-one", "key-two"))
    assert [client.get("/v1/models", headers=one).status_code for _ in range(2)] == [200, 200]
    limited = client.get("/v1/models", headers=one)
    assert assert_error(limited, 429, "2 requests a minute")["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    assert client.get("/v1/models", headers=two).status_code == 200


def test_the_rate_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.wait_s("k") for _ in range(3)] == [0, 0, 60]
    now[0] = 59.5
    assert limiter.wait_s("k") == pytest.approx(0.5) and limiter.wait_s("other") == 0
    now[0] = 60.0
    assert limiter.wait_s("k") == 0


def test_listening_beyond_loopback_needs_keys(make_settings, embedder):
    engine = build_engine(make_settings(server={"host": "0.0.0.0"}), embed_model=embedder)
    with pytest.raises(ConfigError, match="Refusing to listen on 0.0.0.0 without API keys"):
        create_app(engine, engine.settings)
    keyed = make_settings(server={"host": "0.0.0.0", "api_keys": [KEY]})
    assert create_app(engine, keyed).title == "rag"


def test_an_empty_keys_file_is_an_error_not_an_open_door(make_settings, embedder, tmp_path):
    (tmp_path / "keys.txt").write_text("# nobody yet\n")
    engine = build_engine(make_settings(server={"api_keys_file": str(tmp_path / "keys.txt")}), embed_model=embedder)
    with pytest.raises(ConfigError, match="holds no key"):
        create_app(engine, engine.settings)


# ---- readiness and backend failures ----


class SlowToLoad:
    """An LLM factory whose n-th attempt waits for gates[n], then fails if n < failures."""

    def __init__(self, attempts: int = 1, failures: int = 0) -> None:
        self.gates = [threading.Event() for _ in range(attempts)]
        self.failures, self.calls = failures, 0

    def __call__(self) -> ExtractiveMockLLM:
        n, self.calls = self.calls, self.calls + 1
        assert self.gates[n].wait(30)
        if n < self.failures:
            raise BackendError("Cannot connect to the LLM backend (test). Is the server running?")
        return ExtractiveMockLLM()


def readyz_until(client: TestClient, status: str) -> dict:
    deadline = time.monotonic() + 10
    while (probe := client.get("/readyz")).json()["status"] != status:
        assert time.monotonic() < deadline, probe.json()
        time.sleep(0.02)
    assert probe.status_code == (200 if status == "ready" else 503)
    return probe.json()


def test_ready_only_once_the_model_is_loaded_and_questions_wait_for_it(serve):
    loading = SlowToLoad()
    client = serve(factory=loading, ready=False)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert readyz_until(client, "loading") == {"status": "loading", "error": None}
    error = assert_error(client.post("/v1/chat/completions", json=user(MEET)), 503, "still loading")
    assert error["code"] == "model_not_ready"
    loading.gates[0].set()
    assert readyz_until(client, "ready") == {"status": "ready", "llm": "mock"}
    assert client.post("/v1/chat/completions", json=user(MEET)).status_code == 200
    assert loading.calls == 1


def test_a_model_that_fails_to_load_is_reported_and_retried_at_the_next_probe(serve):
    loading = SlowToLoad(attempts=2, failures=1)
    client = serve(factory=loading, ready=False)
    loading.gates[0].set()
    assert "Cannot connect to the LLM backend (test)" in readyz_until(client, "failed")["error"]
    deadline = time.monotonic() + 10
    while loading.calls < 2:  # the probe started the next attempt
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert_error(client.post("/v1/chat/completions", json=user(MEET)), 503, "The LLM could not be loaded: Cannot connect")
    loading.gates[1].set()
    readyz_until(client, "ready")
    assert client.post("/v1/chat/completions", json=user(MEET)).status_code == 200


class Failing(ExtractiveMockLLM):
    """The mock, failing the way a backend does: at the request, or after `after` tokens."""

    def __init__(self, error: Exception, after: int | None = None) -> None:
        super().__init__()
        self._error, self._after = error, after

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):
        if self._after is None:
            raise self._error
        tokens = super().stream_complete(prompt, formatted, **kwargs)

        def gen():
            for i, token in enumerate(tokens):
                if i == self._after:
                    raise self._error
                yield token

        return gen()


@pytest.mark.parametrize("stream", [False, True])
def test_an_llm_backend_that_is_down_is_a_503_and_one_that_fails_a_502(serve, stream):
    down = serve(llm=Failing(ConnectionError("connection refused")))
    failing = serve(llm=Failing(RuntimeError("HTTP 500 from upstream")))
    post = (lambda c: streamed(c, user(MEET))[0]) if stream else (lambda c: c.post("/v1/chat/completions", json=user(MEET)))
    error = assert_error(post(down), 503, "Cannot connect to the LLM backend (mock)")
    assert error["type"] == "backend_unavailable"
    assert assert_error(post(failing), 502, "HTTP 500 from upstream")["type"] == "backend_error"


def test_a_failure_mid_stream_ends_it_with_an_error_event(serve):
    client = serve(llm=Failing(RuntimeError("the server went away"), after=3))
    response, chunks = streamed(client, user(MEET))
    assert response.status_code == 200  # sent before the failure
    *parts, last = chunks
    assert len(parts) == 4 and "the server went away" in last["error"]["message"] and "[DONE]" not in chunks
    assert last["error"]["type"] == "backend_error"
    assert client.post("/v1/chat/completions", json=user(ELSEWHERE)).status_code == 200  # the model's lock was let go


class BrokenRetriever:
    def retrieve(self, *_args, **_kwargs):
        raise ZeroDivisionError("division by zero in a secret place")


def test_an_unexpected_error_is_a_500_without_a_traceback(serve):
    client = serve()
    client.engine.retriever = BrokenRetriever()
    for response in (client.post("/v1/chat/completions", json=user(MEET)), streamed(client, user(MEET))[0]):
        assert_error(response, 500, "Internal error (ZeroDivisionError)")
        assert "secret place" not in response.text


# ---- a real `rag serve` process, real clients ----


@contextmanager
def running_rag_serve(folder: Path, up: str = "/readyz", corpus: Path | None = None, **env: str) -> Iterator[str]:
    """`rag serve` over `corpus` (default: a copy of the seeds) on a free loopback port, once `up` answers 200; stopped after."""
    if corpus is None:
        corpus = folder / "corpus"
        shutil.copytree(SEEDS, corpus)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    environ.update(RAG_CORPUS_PATH=str(corpus), RAG_CHROMA_PATH=str(folder / "index"), **env)
    log = folder / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=environ, cwd=folder,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, f"rag serve did not start: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}{up}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def rag_server(tmp_path_factory):
    """One `rag serve` with the mock LLM and an API key for the module's tests."""
    with running_rag_serve(tmp_path_factory.mktemp("served"), RAG_LLM_BACKEND="mock", RAG_SERVER_API_KEYS=KEY) as url:
        yield url


@pytest.fixture
def openai_client(rag_server):
    from openai import OpenAI

    with OpenAI(base_url=f"{rag_server}/v1", api_key=KEY, max_retries=0, timeout=60) as client:
        yield client


@pytest.mark.server
def test_the_openai_client_gets_a_cited_answer(openai_client):
    assert [m.id for m in openai_client.models.list()] == ["rag"]
    completion = openai_client.chat.completions.create(model="rag", messages=[{"role": "user", "content": MEET}])
    content = completion.choices[0].message.content
    extra = completion.model_extra
    assert "deputy prime ministers" in content and MARKER.search(content)
    assert extra["refused"] is False and extra["citations"][0]["source"] == SEED_A and extra["citations"][0]["verified"]


@pytest.mark.server
def test_the_openai_client_streams_a_cited_answer(openai_client):
    chunks = list(openai_client.chat.completions.create(model="rag", messages=[{"role": "user", "content": MEET}], stream=True))
    draft = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1]
    assert len(chunks) > 3 and "deputy prime ministers" in draft and final.choices[0].finish_reason == "stop"
    assert MARKER.search(final.model_extra["answer"]) and final.model_extra["refused"] is False
    assert final.model_extra["citations"][0]["source"] == SEED_A


@pytest.mark.server
@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client_gets_a_refusal_for_a_question_outside_the_documents(openai_client, stream):
    reply = openai_client.chat.completions.create(model="rag", messages=[{"role": "user", "content": ELSEWHERE}], stream=stream)
    if stream:
        chunks = list(reply)
        text, extra = "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].model_extra
    else:
        text, extra = reply.choices[0].message.content, reply.model_extra
    assert text == REFUSAL and extra["refused"] is True and extra["citations"] == []


@pytest.mark.server
def test_a_wrong_key_is_refused_by_the_openai_client(rag_server):
    import openai

    with openai.OpenAI(base_url=f"{rag_server}/v1", api_key="not-the-key", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError, match="invalid API key"):
            client.chat.completions.create(model="rag", messages=[{"role": "user", "content": MEET}])


@pytest.mark.server
def test_curl_without_a_key_gets_401_and_an_openai_error(rag_server):
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test"
    body = json.dumps(user(MEET))
    out = subprocess.run([curl, "-sS", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "-d", body,
                          f"{rag_server}/v1/chat/completions"], capture_output=True, text=True, timeout=30, check=True).stdout
    text, status = out.rsplit("\n", 1)
    assert status == "401" and json.loads(text)["error"]["code"] == "invalid_api_key"
    health = subprocess.run([curl, "-sS", f"{rag_server}/healthz"], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(health.stdout) == {"status": "ok"}


@pytest.mark.server
def test_a_server_whose_llm_backend_is_unreachable_is_alive_not_ready_and_says_why(tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with running_rag_serve(tmp_path, up="/healthz", RAG_LLM_BACKEND="openai-compatible", RAG_LLM_BASE_URL=nowhere,
                           RAG_LLM_MAX_RETRIES="0", RAG_LLM_TIMEOUT_S="2") as url:
        deadline = time.monotonic() + 30
        while (probe := httpx.get(f"{url}/readyz", timeout=10)).json()["status"] != "failed":
            assert time.monotonic() < deadline, probe.text
            time.sleep(0.3)
        assert probe.status_code == 503 and "Cannot connect to the server at" in probe.json()["error"]
        reply = httpx.post(f"{url}/v1/chat/completions", json=user(MEET), timeout=30)
        assert reply.status_code == 503 and "The LLM could not be loaded: Cannot connect" in reply.json()["error"]["message"]
        assert reply.headers["retry-after"] == "5" and "Traceback" not in reply.text


# ---- two replicas over one Chroma server and one llama.cpp server ----

COMET = "Zorblax the comet was seen over Yerevan on Tuesday by the Byurakan observatory."


def _ask(url: str, question: str) -> dict:
    reply = httpx.post(f"{url}/v1/chat/completions", json=user(question), timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.server
def test_two_replicas_over_one_chroma_and_one_llm_server_answer_alike_and_follow_each_others_ingests(
        chroma_server, tmp_path, corpus):
    from rag.backends import ensure_gguf

    model = ensure_gguf("smollm2-135m", tmp_path / "cache")
    llm_port = free_port()
    # --interrupt_requests False: by default llama_cpp.server cuts the answer it streams when another request comes in
    llm = start_llama_server(model, llm_port, tmp_path / "llm.log", "--interrupt_requests", "False")
    shared = dict(RAG_CHROMA_MODE="http", RAG_CHROMA_PORT=str(chroma_server[1]), RAG_LLM_BACKEND="openai-compatible",
                  RAG_LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1", RAG_LLM_MODEL="smollm2",
                  RAG_ANSWER_SUPPORT_CHECK="lexical")  # SmolLM2 cannot judge support (see test_backends)
    try:
        with running_rag_serve(tmp_path / "a", corpus=corpus, **shared) as a, \
                running_rag_serve(tmp_path / "b", corpus=corpus, **shared) as b:
            first, second = _ask(a, MEET), _ask(b, MEET)
            assert first["passages"] and first["passages"] == second["passages"]
            # the words may differ (llama.cpp's prompt cache changes its arithmetic): the passages and sources may not
            assert all(not r["refused"] and SEED_A in {c["source"] for c in r["citations"]} for r in (first, second))
            (corpus / "comet.txt").write_text(COMET + "\n", encoding="utf-8")
            report = httpx.post(f"{a}/v1/ingest", json={}, timeout=300).json()
            assert report["added"] == ["comet.txt"], report
            start, question = time.monotonic(), "What was seen over Yerevan on Tuesday?"
            answer = _ask(b, question)
            while not any(p["source"] == "comet.txt" for p in answer["passages"]):
                assert time.monotonic() - start < 15, answer["passages"]
                time.sleep(0.5)
                answer = _ask(b, question)
            assert answer["passages"][0]["source"] == "comet.txt"
            assert not answer["refused"] and any(c["source"] == "comet.txt" for c in answer["citations"]), answer
    finally:
        llm.terminate()
        llm.wait(timeout=20)
