"""compose.yaml and the Dockerfile stay in step with the code (no Docker engine runs here to try them).

What would break a `docker compose up` silently is checked without Docker: every RAG_* variable the
services set is a real setting that loads to what the deployment needs, the replicas would refuse to
start without keys, and the Dockerfile copies files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from rag.errors import ConfigError
from rag.server import api_keys, check_exposure
from rag.settings import load_settings

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def _settings(service: str, monkeypatch: pytest.MonkeyPatch, **extra: str):
    for name, value in {**COMPOSE["services"][service]["environment"], **extra}.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_the_replicas_settings_point_at_the_shared_chroma_and_llm_servers(monkeypatch):
    settings = _settings("rag", monkeypatch, RAG_SERVER_API_KEYS="k1")
    assert (settings.chroma.mode, settings.chroma.host, settings.chroma.port) == ("http", "chroma", 8000)
    assert settings.llm.backend == "openai-compatible" and settings.llm.base_url == "http://llm:8080/v1"
    # the llama.cpp server's alias is the model name the replicas ask for
    assert f"--model_alias {settings.llm.model}" in COMPOSE["services"]["llm"]["command"]
    assert "--interrupt_requests False" in COMPOSE["services"]["llm"]["command"]


def test_a_replica_listening_beyond_loopback_has_keys_and_would_refuse_without(monkeypatch):
    command = COMPOSE["services"]["rag"]["command"]
    host = command[command.index("--host") + 1]
    settings = _settings("rag", monkeypatch, RAG_SERVER_API_KEYS="k1")
    settings.server.host = host
    check_exposure(settings.server, api_keys(settings.server))
    monkeypatch.delenv("RAG_SERVER_API_KEYS")
    bare = load_settings()
    bare.server.host = host
    with pytest.raises(ConfigError, match="without API keys"):
        check_exposure(bare.server, api_keys(bare.server))
    assert ":?" in COMPOSE["services"]["rag"]["environment"]["RAG_SERVER_API_KEYS"]  # compose stops without them


def test_only_one_service_ingests_and_the_replicas_wait_for_it():
    services = COMPOSE["services"]
    assert services["ingest"]["command"] == ["rag", "ingest"]
    for name in ("rag", "app"):
        assert services[name]["depends_on"]["ingest"] == {"condition": "service_completed_successfully"}
    corpus = {s["volumes"][0].rsplit(":", 1)[1] for n, s in services.items() if n in ("ingest", "rag", "app")}
    assert corpus == {"/corpus"} == {COMPOSE["x-rag"]["environment"]["RAG_CORPUS_PATH"]}


def test_the_dockerfile_copies_what_exists_and_builds_llama_cpp_without_native_or_amx():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    assert "-DGGML_NATIVE=OFF" in dockerfile and "-DGGML_AMX_TILE=OFF" in dockerfile
    pinned = re.search(r'"llama-cpp-python==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"llama-cpp-python[server]=={pinned}" in dockerfile
