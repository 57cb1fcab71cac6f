"""Retrieval configurations compared on the same test set, in one run, through `rag eval`'s scorer.

    .venv/bin/python bench/retrieval_modes.py [--llm mock|embedded] [--limit N]

With --llm mock only the retrieval metrics (hit rate, MRR) mean anything, in seconds;
with the embedded model every metric does (about 6 minutes per configuration).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from rag.engine import build_engine
from rag.evaluate import evaluate, load_testset
from rag.settings import load_settings

CONFIGS = {
    "vector": {"mode": "vector", "dedup": False},
    "vector+dedup": {"mode": "vector", "dedup": True},
    "hybrid": {"mode": "hybrid", "dedup": False},
    "hybrid+dedup": {"mode": "hybrid", "dedup": True},
    "hybrid+dedup+rerank": {"mode": "hybrid", "dedup": True, "rerank": True},
    "hybrid+dedup+mmr": {"mode": "hybrid", "dedup": True, "mmr": True},
}
COLUMNS = ["hit_rate", "mrr", "context_recall", "correct", "refusal_accuracy", "false_refusals", "citation_validity", "latency_p50_s", "ttft_p50_s"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", default="mock")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    args = parser.parse_args()
    base = load_settings(overrides={"llm": {"backend": args.llm}})
    cases = load_testset(base.eval.testset)[: args.limit] if args.limit else load_testset(base.eval.testset)
    embedder = None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, retrieval in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            settings = load_settings(overrides={"llm": {"backend": args.llm}, "retrieval": retrieval, "chroma": {"path": tmp}})
            engine = build_engine(settings, embed_model=embedder)
            embedder = engine.embed_model
            summary = evaluate(engine, cases)["summary"]
            rows.append((name, summary))
            print(f"{name}: " + ", ".join(f"{c}={summary.get(c)}" for c in COLUMNS), file=sys.stderr, flush=True)
    print(f"{'configuration':<22}" + "".join(f"{c:>18}" for c in COLUMNS))
    for name, summary in rows:
        print(f"{name:<22}" + "".join(f"{str(summary.get(c)):>18}" for c in COLUMNS))
    print(f"({len(cases)} cases, LLM: {args.llm})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
