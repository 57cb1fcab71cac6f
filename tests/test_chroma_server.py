"""Chroma in client/server mode: `chroma run` on loopback, ingest and ask against it."""

import json

import pytest

from conftest import free_port

from rag.cli import main

pytestmark = pytest.mark.server


def test_ingest_and_ask_against_a_chroma_server(chroma_server, monkeypatch, tmp_path, corpus, capsys):
    proc, port = chroma_server
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_MODE", "http")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(port))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "local"))  # the ingest lock only
    monkeypatch.setenv("RAG_LLM_BACKEND", "mock")
    assert main(["ingest"]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["ingest"]) == 0
    assert "0 added, 0 updated, 0 removed, 2 unchanged" in capsys.readouterr().out
    assert main(["ask", "Who will meet in Moscow next week?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert not answer["refused"] and answer["citations"][0]["verified"]
    assert not (tmp_path / "local" / "chroma.sqlite3").exists()  # the vectors live on the server
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
    assert client.get_collection("corpus").count() > 10


def test_chroma_server_down_is_a_clear_error(monkeypatch, tmp_path, corpus, capsys):
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_MODE", "http")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(free_port()))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "local"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "mock")
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert "Cannot reach the Chroma server at http://127.0.0.1:" in err and "chroma run" in err
