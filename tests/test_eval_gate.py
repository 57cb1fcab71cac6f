"""The CI gate: each test set through the embedded default model, against its thresholds.

Three corpora: the seeds (eval/testset.yaml), SQLite's own documentation, a real corpus
nobody here wrote (eval/sqlite_testset.yaml; its pages come from Debian's sqlite3-doc
package, fetched by eval/fetch_corpus.py and kept out of git), and Git's guides (git-doc),
whose blind set was written by a helper that saw only the documents (eval/blind/) and which
no rule was fitted on: the left-out figures.
Each has a second set of broad questions (summaries, overviews, comparisons, how-to,
explanations: *_broad_testset.yaml).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CORPORA = Path.home() / ".cache" / "rag" / "corpora"


def sqlite_docs() -> Path:
    folder = CORPORA / "sqlite-pages"
    subprocess.run([sys.executable, str(ROOT / "eval" / "fetch_corpus.py"), str(folder)], check=True)
    return folder


def git_docs() -> Path:
    folder = CORPORA / "git"
    subprocess.run([sys.executable, str(ROOT / "eval" / "fetch_corpus.py"), "--corpus", "git", str(folder)], check=True)
    return folder


@pytest.mark.llm
@pytest.mark.timeout(2400)  # a whole test set through the real model: ~8 min on 2 cores, more on a busy machine
@pytest.mark.parametrize("name,corpus,testset,thresholds", [
    ("seeds", lambda: ROOT / "seeds", "testset.yaml", "thresholds.toml"),
    ("sqlite", sqlite_docs, "sqlite_testset.yaml", "thresholds_sqlite.toml"),
    ("seeds-broad", lambda: ROOT / "seeds", "broad_testset.yaml", "thresholds_broad.toml"),
    ("sqlite-broad", sqlite_docs, "sqlite_broad_testset.yaml", "thresholds_sqlite_broad.toml"),
    ("git", git_docs, "blind/git_testset.yaml", "thresholds_git.toml"),
    ("git-broad", git_docs, "blind/git_broad_testset.yaml", "thresholds_git_broad.toml"),
])
def test_eval_gate(monkeypatch, tmp_path_factory, capsys, name, corpus, testset, thresholds):
    folder = corpus()
    monkeypatch.setenv("RAG_CORPUS_PATH", str(folder))
    # One index per corpus for its two test sets: the SQLite pages take ~1.5 min to embed on a slow CPU.
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path_factory.getbasetemp() / f"index-{folder.name}"))
    monkeypatch.setenv("RAG_EVAL_THRESHOLDS", str(ROOT / "eval" / thresholds))
    # The labelled pairs score the same judge whatever the test set: measured (and gated) once, with the seeds.
    monkeypatch.setenv("RAG_EVAL_SUPPORT_PAIRS", str(ROOT / "eval" / "support_pairs.yaml") if name == "seeds" else "")
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"eval-{name}"
    code = main(["eval", "--testset", str(ROOT / "eval" / testset), "--json-out", f"{out}.json", "--html-out", f"{out}.html", "--gate"])
    captured = capsys.readouterr()
    print(captured.out)  # the summary table, in the CI log
    summary = json.loads(Path(f"{out}.json").read_text())["summary"]
    assert code == 0, f"{captured.err}\n{summary}"
