"""LLM backends: a real OpenAI-compatible server (llama.cpp serving SmolLM2), and clear errors."""

import re
from pathlib import Path

import pytest

from conftest import free_port, start_llama_server

from rag.answer import stream_answer
from rag.backends import PRESETS, build_llm, ensure_gguf, llm_label
from rag.cli import main
from rag.errors import BackendError
from rag.settings import load_settings


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    return ensure_gguf("smollm2-135m", tmp_path_factory.mktemp("cache"))


@pytest.fixture
def server(smollm2, tmp_path):
    port = free_port()
    proc = start_llama_server(smollm2, port, tmp_path / "server.log")
    yield proc, f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def remote_env(monkeypatch, tmp_path, corpus):
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai-compatible")
    # SmolLM2-135M cannot judge support (its P(yes) on a quote identical to the sentence is below the
    # threshold, so `rag doctor` rightly fails the citation check): these tests exercise the server
    # transport with the lexical check. The log-probability path is tested with tests/fake_openai.py
    # and with the embedded 1.5B model.
    monkeypatch.setenv("RAG_ANSWER_SUPPORT_CHECK", "lexical")


@pytest.mark.server
def test_openai_compatible_server_answers_streaming_with_citations(server, remote_env, monkeypatch, embedder):
    from rag.engine import build_engine

    _, url = server
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("RAG_LLM_MODEL", "smollm2")
    engine = build_engine(load_settings(), embed_model=embedder)
    stream = stream_answer(engine, "What did Pashinyan say Armenia was ready to unblock?")
    deltas = list(stream)
    answer = stream.answer
    assert len(deltas) > 3  # streamed, not one block
    assert not answer.refused and re.search(r"\btransport(ation)? links\b", answer.answer)  # SmolLM2 may write "transportation"
    assert answer.citations and all(c.verified for c in answer.citations)
    assert answer.backend.llm == f"openai-compatible:smollm2 @ {url}"


@pytest.mark.server
def test_doctor_reports_the_server_healthy(server, remote_env, monkeypatch, capsys):
    _, url = server
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"[ok  ] llm server: {url} is up; models: smollm2" in out
    assert "[ok  ] llm generation: openai-compatible:smollm2" in out and "All checks passed." in out


@pytest.mark.server
def test_server_stopped_mid_session_gives_a_clear_error_and_the_chat_goes_on(server, remote_env, monkeypatch, capsys):
    proc, url = server
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    state = {"n": 0}

    def typed(prompt=""):
        state["n"] += 1
        if state["n"] == 2:
            proc.terminate()
            proc.wait(timeout=20)
        return ["In what year did the Soviet Union collapse?", "And what did Pashinyan say?", "/quit"][state["n"] - 1]

    monkeypatch.setattr("builtins.input", typed)
    assert main(["chat"]) == 0  # the session survives the failure
    out = capsys.readouterr().out
    assert "1991" in out
    assert f"Error: Cannot connect to the LLM backend (openai-compatible:smollm2 @ {url})" in out


@pytest.mark.server
def test_unknown_model_names_the_server_and_what_it_serves(server, remote_env, monkeypatch, capsys):
    _, url = server
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("RAG_LLM_MODEL", "gpt-99")
    assert main(["ask", "What did Pashinyan say?"]) == 2
    err = capsys.readouterr().err
    assert "does not serve model 'gpt-99' (it serves: smollm2)" in err and "Traceback" not in err


def test_unreachable_base_url_is_a_clear_error(remote_env, monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("RAG_LLM_TIMEOUT_S", "5")
    assert main(["ask", "What did Pashinyan say?"]) == 2
    err = capsys.readouterr().err
    assert f"Cannot connect to the server at {url}" in err and "Traceback" not in err
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] llm server" in out and "fix: Start the server" in out


def test_openai_without_a_key_is_a_clear_error(monkeypatch, tmp_path, corpus, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
    assert main(["ask", "What did Pashinyan say?"]) == 2
    assert "needs an API key: set OPENAI_API_KEY" in capsys.readouterr().err


def test_missing_base_url_and_ollama_model_are_clear_errors():
    with pytest.raises(BackendError, match="RAG_LLM_BASE_URL"):
        build_llm(load_settings(overrides={"llm": {"backend": "openai-compatible"}}).llm, Path("/tmp"))
    with pytest.raises(BackendError, match="RAG_LLM_MODEL"):
        build_llm(load_settings(overrides={"llm": {"backend": "ollama"}}).llm, Path("/tmp"))


def test_ollama_down_is_a_clear_error(monkeypatch, tmp_path, corpus, capsys):
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "ollama")
    monkeypatch.setenv("RAG_LLM_MODEL", "qwen2.5:1.5b")
    monkeypatch.setenv("RAG_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["ask", "What did Pashinyan say Armenia was ready to unblock?"]) == 2
    err = capsys.readouterr().err
    assert "Cannot connect to the LLM backend (ollama:qwen2.5:1.5b @ http://127.0.0.1:" in err


def test_labels_name_backend_model_and_url():
    settings = load_settings(overrides={"llm": {"backend": "openai-compatible", "base_url": "http://h:1/v1", "model": "m"}})
    assert llm_label(settings.llm) == "openai-compatible:m @ http://h:1/v1"
    assert llm_label(load_settings().llm) == "embedded:qwen2.5-coder-1.5b"


def test_presets_are_pinned_and_verified(tmp_path):
    assert set(PRESETS) == {"qwen2.5-coder-1.5b", "qwen-0.5b", "smollm2-135m"}
    path = ensure_gguf("smollm2-135m", tmp_path)
    assert path.stat().st_size == PRESETS["smollm2-135m"].size


@pytest.mark.parametrize("preset,name", [
    ("qwen2.5-coder-1.5b", "Qwen2.5 Coder 1.5B Instruct GGUF"),
    ("qwen-0.5b", "Qwen2.5 Coder 0.5B Instruct AWQ"),
    ("smollm2-135m", "Smollm2 135M 8k Lc100K Mix1 Ep2"),  # SmolLM2-135M-Instruct, as its GGUF names itself
])
def test_each_preset_is_the_model_it_claims(preset, name):
    from llama_cpp import Llama

    path = ensure_gguf(preset, load_settings().cache_dir)
    model = Llama(model_path=str(path), vocab_only=True, verbose=False)
    assert model.metadata["general.name"] == name
    assert "tokenizer.chat_template" in model.metadata


@pytest.mark.server
def test_openai_backend_streams_through_an_openai_api(server, remote_env, monkeypatch, embedder):
    """The `openai` backend (LlamaIndex OpenAI) against a local server speaking OpenAI's API."""
    from rag.engine import build_engine

    _, url = server
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")
    monkeypatch.setenv("RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    engine = build_engine(load_settings(), embed_model=embedder)
    stream = stream_answer(engine, "In what year did the Soviet Union collapse?")
    deltas = list(stream)
    assert len(deltas) > 2 and "1991" in stream.answer.answer
    assert stream.answer.backend.llm == f"openai:gpt-4o-mini @ {url}"


def test_ollama_backend_streams_and_doctor_checks_the_model(monkeypatch, tmp_path, corpus, embedder, capsys):
    """The `ollama` backend (LlamaIndex Ollama, native API) against a server speaking that API."""
    from fake_openai import FakeOpenAI

    from rag.engine import build_engine

    server = FakeOpenAI()
    try:
        root = server.url.removesuffix("/v1")
        monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
        monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
        monkeypatch.setenv("RAG_LLM_BACKEND", "ollama")
        monkeypatch.setenv("RAG_LLM_BASE_URL", root)
        monkeypatch.setenv("RAG_LLM_MODEL", "fake")
        engine = build_engine(load_settings(), embed_model=embedder)
        stream = stream_answer(engine, "Who will meet in Moscow next week?")
        deltas = list(stream)
        assert len(deltas) == 4 and not stream.answer.refused and stream.answer.citations
        assert stream.answer.backend.llm == f"ollama:fake @ {root}"
        assert main(["doctor"]) == 0
        assert f"[ok  ] llm server: {root} is up; models: fake:latest" in capsys.readouterr().out
        monkeypatch.setenv("RAG_LLM_MODEL", "missing")
        assert main(["doctor"]) == 1
        assert "has no model 'missing'" in capsys.readouterr().out
    finally:
        server.close()
