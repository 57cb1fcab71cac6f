"""The CI gate: the project's test set through the embedded default model, against eval/thresholds.toml."""

import json
from pathlib import Path

import pytest

from rag.cli import main

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.mark.llm
def test_eval_gate(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RAG_CORPUS_PATH", str(ROOT / "seeds"))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    monkeypatch.setenv("RAG_EVAL_THRESHOLDS", str(ROOT / "eval" / "thresholds.toml"))
    ARTIFACTS.mkdir(exist_ok=True)
    code = main(["eval", "--testset", str(ROOT / "eval" / "testset.yaml"), "--json-out", str(ARTIFACTS / "eval.json"),
                 "--html-out", str(ARTIFACTS / "eval.html"), "--gate"])
    captured = capsys.readouterr()
    print(captured.out)  # the summary table, in the CI log
    summary = json.loads((ARTIFACTS / "eval.json").read_text())["summary"]
    assert code == 0, f"{captured.err}\n{summary}"
