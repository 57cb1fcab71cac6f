"""Shared fixtures: a temp copy of the corpus, settings pointing at temp folders, and engines.

The embedding model is real (it ships in a package and loads offline); the LLM is the
deterministic extractive mock unless a test is marked `llm`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from rag.backends import build_embedding, embed_label
from rag.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_A = "000_ee4045ecc5c71559.txt"  # news brief (no title line, no year)
SEED_B = "001_1f22d8ffd3c24c03.txt"  # AFP / Moscow Times article


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's rag.toml or RAG_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def embedder():
    return build_embedding(load_settings().embed)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(SEEDS, folder)
    return folder


@pytest.fixture
def make_settings(tmp_path: Path, corpus: Path) -> Callable[..., Settings]:
    def make(**groups: dict[str, Any]) -> Settings:
        base: dict[str, Any] = {
            "corpus": {"path": str(corpus)},
            "chroma": {"path": str(tmp_path / "index")},
            "llm": {"backend": "mock"},
        }
        for group, values in groups.items():
            base.setdefault(group, {}).update(values)
        return load_settings(overrides=base)

    return make


@pytest.fixture
def mock_engine(make_settings, embedder):
    from rag.engine import build_engine

    return build_engine(make_settings(), embed_model=embedder)


@pytest.fixture(scope="session")
def real_engine(tmp_path_factory: pytest.TempPathFactory, embedder):
    """The embedded default model over the seed corpus (loaded once per session)."""
    from rag.engine import build_engine

    folder = tmp_path_factory.mktemp("real")
    settings = load_settings(overrides={"corpus": {"path": str(SEEDS)}, "chroma": {"path": str(folder / "index")}})
    return build_engine(settings, embed_model=embedder)


def label(settings: Settings) -> str:
    return embed_label(settings.embed)


def worker_pid(parent: int) -> int:
    """The model's worker: the child of process `parent` that runs rag.worker (a test kills it as a crash would)."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"rag.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise AssertionError(f"no rag.worker child of process {parent}")


def free_port() -> int:
    """A free TCP port on loopback, for servers the tests start."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path):
    """A `chroma run` server on a free loopback port, its data in the test's folder; stopped at the end."""
    import subprocess
    import sys
    import time

    import httpx

    binary = shutil.which("chroma", path=str(Path(sys.executable).parent)) or str(ROOT / ".venv" / "bin" / "chroma")
    port = free_port()
    proc = subprocess.Popen([binary, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "server-data")],
                            stdout=open(tmp_path / "chroma.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError((tmp_path / "chroma.log").read_text()[-2000:])
    yield proc, port
    proc.terminate()
    proc.wait(timeout=20)


def start_llama_server(model: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    """`python -m llama_cpp.server` serving `model` as "smollm2" on a loopback port, once it lists its models."""
    import subprocess
    import sys
    import time

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", *extra],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def mock_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, corpus: Path) -> Path:
    """RAG_* variables for a door (CLI, app) over the temp corpus, a temp index and the mock LLM."""
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "mock")
    return corpus


@pytest.fixture
def embed(embedder):
    """Unit-length embeddings of a list of texts, as the pipeline computes them."""
    import numpy as np

    def run(texts):
        v = np.asarray(embedder.get_text_embedding_batch(texts), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return run


@pytest.fixture
def fake():
    """A fake OpenAI-compatible server on loopback (tests/fake_openai.py)."""
    from fake_openai import FakeOpenAI

    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def fake_env(fake, monkeypatch, tmp_path, corpus):
    """RAG_* variables for a door over the temp corpus and the fake OpenAI-compatible server."""
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai-compatible")
    monkeypatch.setenv("RAG_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("RAG_LLM_TIMEOUT_S", "2")
    monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
    return fake
