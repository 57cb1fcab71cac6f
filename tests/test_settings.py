from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.settings import load_settings


def test_defaults_are_the_offline_embedded_setup():
    s = load_settings()
    assert s.llm.backend == "embedded"
    from rag.backends import model_name

    assert s.llm.model is None and model_name(s.llm) == "qwen2.5-coder-1.5b"
    assert s.embed.backend == "local"
    assert s.chroma.mode == "embedded"
    assert s.corpus.path == Path("seeds")


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "conf" / "rag.toml"
    cfg.parent.mkdir()
    cfg.write_text('[corpus]\npath = "docs"\n[retrieval]\ntop_k = 3\n[llm]\nbackend = "mock"\nmodel = "from-file"\n')
    s = load_settings(cfg)
    assert s.corpus.path == tmp_path / "conf" / "docs"  # relative to the file, not the cwd
    assert s.retrieval.top_k == 3 and s.llm.model == "from-file"

    monkeypatch.setenv("RAG_RETRIEVAL_TOP_K", "5")
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings(cfg)
    assert s.retrieval.top_k == 5  # env beats file
    assert s.llm.base_url == "http://127.0.0.1:9/v1"
    assert s.llm.model == "from-file"  # untouched keys of a group survive

    s = load_settings(cfg, {"retrieval": {"top_k": 7}})
    assert s.retrieval.top_k == 7  # flags beat env


def test_rag_toml_in_cwd_and_rag_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "rag.toml").write_text("[retrieval]\ntop_k = 2\n")
    assert load_settings().retrieval.top_k == 2
    other = tmp_path / "other.toml"
    other.write_text("[retrieval]\ntop_k = 9\n")
    monkeypatch.setenv("RAG_CONFIG", str(other))
    assert load_settings().retrieval.top_k == 9


def test_invalid_value_names_field_and_allowed_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_LLM_BACKEND", "gpt5")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "llm.backend" in message and "'gpt5'" in message
    assert "embedded" in message and "openai-compatible" in message


def test_invalid_number_and_unknown_key_in_file(tmp_path: Path):
    cfg = tmp_path / "rag.toml"
    cfg.write_text("[retrieval]\ntop_k = 0\nbogus = 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "retrieval.top_k" in str(err.value) and "retrieval.bogus" in str(err.value)


def test_malformed_toml_and_missing_file(tmp_path: Path):
    cfg = tmp_path / "rag.toml"
    cfg.write_text("[llm\nbackend = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_chunk_overlap_must_be_below_size():
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(overrides={"chunking": {"chunk_size": 32, "chunk_overlap": 32}})


def test_an_empty_support_pairs_setting_turns_the_verifier_measurement_off(monkeypatch):
    monkeypatch.setenv("RAG_EVAL_SUPPORT_PAIRS", "")
    assert load_settings().eval.support_pairs is None
    monkeypatch.setenv("RAG_EVAL_SUPPORT_PAIRS", "eval/other.yaml")
    assert str(load_settings().eval.support_pairs) == "eval/other.yaml"


def test_server_settings_default_to_loopback_and_take_keys_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    s = load_settings()
    assert s.server.host == "127.0.0.1" and s.server.api_keys == [] and s.server.api_keys_file is None
    monkeypatch.setenv("RAG_SERVER_API_KEYS", " key-one, key-two ,")
    monkeypatch.setenv("RAG_SERVER_RATE_LIMIT_PER_MINUTE", "5")
    s = load_settings()
    assert [k.get_secret_value() for k in s.server.api_keys] == ["key-one", "key-two"]
    assert "key-one" not in repr(s.server) and s.server.rate_limit_per_minute == 5
    cfg = tmp_path / "conf" / "rag.toml"
    cfg.parent.mkdir()
    cfg.write_text('[server]\napi_keys_file = "keys.txt"\nport = 9000\n')
    s = load_settings(cfg)
    assert s.server.api_keys_file == tmp_path / "conf" / "keys.txt" and s.server.port == 9000  # relative to the file
    monkeypatch.setenv("RAG_SERVER_PORT", "0")
    with pytest.raises(ConfigError, match="server.port"):
        load_settings(cfg)
