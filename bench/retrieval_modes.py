"""Retrieval configurations compared on the same test set, in one run, through `rag eval`'s scorer.

    .venv/bin/python bench/retrieval_modes.py [--llm mock|embedded] [--limit N]

With --llm mock only the retrieval metrics (hit rate, MRR, context recall) mean anything,
in seconds; with the embedded model every metric does (about 6 minutes per configuration).
--duplicates adds a lightly edited copy of every document (a syndicated reprint) to the
corpus, the case near-duplicate folding is for.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from rag.answer import warm_up
from rag.engine import build_engine
from rag.evaluate import evaluate, load_testset
from rag.settings import load_settings

CONFIGS = {
    "vector": {"mode": "vector", "dedup": False, "mmr": False},
    "vector+dedup": {"mode": "vector", "dedup": True, "mmr": False},
    "hybrid": {"mode": "hybrid", "dedup": False, "mmr": False},
    "hybrid+dedup": {"mode": "hybrid", "dedup": True, "mmr": False},
    "hybrid+dedup+mmr": {"mode": "hybrid", "dedup": True, "mmr": True},
    "hybrid+dedup+mmr+rerank": {"mode": "hybrid", "dedup": True, "mmr": True, "rerank": True},
}
COLUMNS = ["hit_rate", "mrr", "context_recall", "passages", "correct", "refusal_accuracy", "false_refusals", "citation_validity",
           "latency_p50_s", "ttft_p50_s", "prompt_tokens_p50"]


def with_reprints(source: Path, target: Path) -> Path:
    """The corpus plus a reprint of each file: same text under another name, with a reprint note."""
    shutil.copytree(source, target)
    for path in sorted(source.iterdir()):
        text = path.read_text(encoding="utf-8")
        (target / f"reprint-{path.name}").write_text(f"Reprinted with permission.\n\n{text}", encoding="utf-8")
    return target


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", default="mock")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--duplicates", action="store_true", help="add a reprint of every document to the corpus")
    parser.add_argument("--context-tokens", type=int, nargs="*", help="token budgets to try (default: the configured one)")
    args = parser.parse_args()
    base = load_settings(overrides={"llm": {"backend": args.llm}})
    corpus = base.corpus.path
    cases = load_testset(base.eval.testset)[: args.limit] if args.limit else load_testset(base.eval.testset)
    embedder = llm = None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.duplicates:
            corpus = with_reprints(base.corpus.path, Path(tmp) / "corpus")
        runs = [(name, retrieval, budget) for name, retrieval in CONFIGS.items() if not args.only or name in args.only
                for budget in (args.context_tokens or [base.retrieval.context_tokens])]
        for name, retrieval, budget in runs:
            if args.context_tokens:
                name = f"{name}@{budget}"
            overrides = {"llm": {"backend": args.llm}, "retrieval": {**retrieval, "context_tokens": budget},
                         "chroma": {"path": f"{tmp}/index"}, "corpus": {"path": str(corpus)}}
            settings = load_settings(overrides=overrides)
            engine = build_engine(settings, embed_model=embedder, llm=llm)
            embedder, llm = engine.embed_model, engine.llm
            warm_up(engine)
            report = evaluate(engine, cases)
            summary = report["summary"]
            summary["passages"] = round(sum(len(c["retrieved_sources"]) for c in report["cases"]) / len(cases), 2)
            rows.append((name, summary))
            print(f"{name}: " + ", ".join(f"{c}={summary.get(c)}" for c in COLUMNS), file=sys.stderr, flush=True)
    print(f"{'configuration':<28}" + "".join(f"{c:>18}" for c in COLUMNS))
    for name, summary in rows:
        print(f"{name:<28}" + "".join(f"{str(summary.get(c)):>18}" for c in COLUMNS))
    print(f"({len(cases)} cases, LLM: {args.llm}{', corpus with reprints' if args.duplicates else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
