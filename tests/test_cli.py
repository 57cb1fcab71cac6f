import json
import pytest


from conftest import SEED_A, SEED_B
from rag.cli import main


def test_ingest_prints_what_changed(mock_env, capsys, monkeypatch):
    import rag.backends

    loads = []
    real_build = rag.backends.build_embedding
    monkeypatch.setattr(rag.backends, "build_embedding", lambda settings: loads.append(1) or real_build(settings))
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    assert f"added  {SEED_A}" in out and f"added  {SEED_B}" in out and "2 added" in out
    assert loads == [1]
    assert main(["ingest"]) == 0
    assert "0 added, 0 updated, 0 removed, 2 unchanged" in capsys.readouterr().out
    assert loads == [1]  # an unchanged corpus never loads the embedding model
    (mock_env / "junk.txt").write_bytes(b"\x00\x01binary")
    assert main(["ingest"]) == 0
    assert "skipped  junk.txt: junk.txt: looks binary" in capsys.readouterr().out


def test_ask_json_has_the_documented_fields(mock_env, capsys):
    assert main(["ask", "Who will meet in Moscow next week, according to Putin?", "--json"]) == 0  # ingests first
    data = json.loads(capsys.readouterr().out)
    assert {"question", "answer", "refused", "citations", "retrieved", "backend", "timings"} <= set(data)
    assert data["refused"] is False and "deputy prime ministers" in data["answer"]
    c = data["citations"][0]
    assert {"n", "source", "title", "text", "quote", "start", "end", "score", "verified"} <= set(c)
    assert c["verified"] is True
    assert {"source", "score", "text"} <= set(data["retrieved"][0])
    assert data["backend"] == {"llm": "mock", "embedding": "local:all-MiniLM-L6-v2"}
    assert {"retrieve_s", "first_token_s", "total_s"} <= set(data["timings"])


def test_ask_with_history_file(mock_env, tmp_path, capsys):
    history = tmp_path / "h.json"
    history.write_text(json.dumps([
        {"role": "user", "content": "What did Pashinyan say Armenia was ready to unblock?"},
        {"role": "assistant", "content": "Transport links."},
    ]))
    assert main(["ask", "What did he say about progress?", "--json", "--history", str(history)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "Pashinyan" in data["standalone_question"] and "progress" in data["answer"]


def test_plain_ask_streams_and_lists_sources(mock_env, capsys):
    assert main(["ask", "What did Pashinyan say Armenia was ready to unblock?"]) == 0
    out = capsys.readouterr().out
    assert "transport links" in out and "Sources:" in out and "(supported)" in out and "✅ supported:" in out


def test_errors_are_messages_not_tracebacks(mock_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_LLM_BACKEND", "nonsense")
    assert main(["ask", "hi"]) == 2
    err = capsys.readouterr().err
    assert "llm.backend" in err and "Traceback" not in err
    monkeypatch.setenv("RAG_LLM_BACKEND", "mock")
    assert main(["ask", "   "]) == 2
    assert "empty" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["ask", "hi", "--history", str(bad)]) == 2
    assert "--history" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_chat_repl_keeps_history_and_new_resets(mock_env, monkeypatch, capsys):
    lines = iter([
        "What did Pashinyan say Armenia was ready to unblock?",
        "What did he say about progress?",
        "/new",
        "/quit",
    ])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat"]) == 0
    out = capsys.readouterr().out
    assert "transport links" in out and "making good progress" in out and "(new conversation)" in out


def test_serve_beyond_loopback_without_keys_refuses_before_loading_anything(mock_env, monkeypatch, capsys):
    import rag.engine

    monkeypatch.setattr(rag.engine, "build_engine", lambda *a, **k: pytest.fail("no engine should be built"))
    assert main(["serve", "--host", "0.0.0.0", "--port", "8091"]) == 2
    err = capsys.readouterr().err
    assert "Refusing to listen on 0.0.0.0 without API keys" in err and "RAG_SERVER_API_KEYS" in err and "Traceback" not in err
