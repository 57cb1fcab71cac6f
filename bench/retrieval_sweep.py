"""Retrieval settings sweep without an LLM: context recall and passage tokens per corpus and config.

    nice -n 19 .venv/bin/python bench/retrieval_sweep.py [--corpora seeds,sqlite,gnuplot,git,man]
        [--configs base,ctx200,...|one-at-a-time|all] [--extra 'name:key=value,key=value;...'] [--sets lookups|broad|both]
        [--index-root /tmp/sweep-index] [--limit N] [--out /tmp/sweep-out] [--fast]

The LLM is the deterministic mock (llm.backend = "mock"): what is measured is what the
retriever gives the LLM, not the answers. Per corpus and config it prints
  recall   rag.evaluate's `context_recall`: of the answerable cases with passages, the share
           whose passages hold every expected keyword;
  strict   the same over every answerable case with keywords (no passages counts as a miss);
  hit      rag.evaluate's `hit_rate` (an expected source among the retrieved passages);
  tok p50  the median, over all cases, of the passages' total tokens (rag.retrieve.count_tokens:
           LlamaIndex's tiktoken tokenizer, the one the context budget counts with); p90 beside it.

The index of each corpus is opened (never ingested) from --index-root/NAME, so give it a copy:
    cp -rL ~/.cache/rag/bench-index-after /tmp/sweep-index
Engines are built per corpus and config (one embedder and one mock LLM serve them all).
--fast skips the answer and citation checks (rag.answer's condense + classify + retrieve only,
the same passages `ask` gives for lookups); the default runs rag.evaluate.run_cases over `ask`,
as rag.evaluate.evaluate does. Every row is written to --out/results.jsonl as it is measured
(a rerun skips the rows already there unless --fresh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cross_corpus import BENCHES  # noqa: E402

from rag.answer import AnswerStream, ask  # noqa: E402
from rag.engine import build_engine  # noqa: E402
from rag.evaluate import Case, keyword_found, load_testset, run_cases  # noqa: E402
from rag.kinds import classify  # noqa: E402
from rag.retrieve import count_tokens  # noqa: E402
from rag.settings import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# One setting at a time from the defaults (rag/settings.py, section retrieval).
ONE_AT_A_TIME: dict[str, dict] = {
    "base": {},
    "ctx200": {"context_tokens": 200},
    "ctx300": {"context_tokens": 300},
    "ctx350": {"context_tokens": 350},
    "topk4": {"top_k": 4},
    "topk8": {"top_k": 8},
    "cand20": {"candidates": 20},
    "norerank": {"rerank": False},
    "nommr": {"mmr": False},
    "mmr0.3": {"mmr_threshold": 0.3},
    "mmr0.7": {"mmr_threshold": 0.7},
    "bm25w0.5": {"bm25_weight": 0.5},
    "vecw0.5": {"vector_weight": 0.5},
    "vector": {"mode": "vector"},
}


def parse_value(text: str):  # noqa: ANN201
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_extra(spec: str) -> dict[str, dict]:
    """'name:key=value,key=value;name2:...' -> {name: {key: value}}."""
    configs = {}
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        name, _, pairs = item.partition(":")
        configs[name.strip()] = {k.strip(): parse_value(v) for k, v in (p.split("=", 1) for p in pairs.split(",") if p.strip())}
    return configs


def passages_fast(engine, case: Case):  # noqa: ANN001, ANN201
    """The passages `ask` would give the LLM, without generating or checking an answer."""
    stream = AnswerStream(engine, case.question, case.history)
    standalone = stream._condense()  # noqa: SLF001 - the mock appends the previous question
    stream.intent = classify(standalone, engine.index.titles())
    return stream._retrieve(standalone).passages  # noqa: SLF001


def measure(engine, cases: list[Case], fast: bool) -> dict:  # noqa: ANN001
    tokens: dict[str, int] = {}
    recall: dict[str, bool | None] = {}
    hits: dict[str, bool | None] = {}
    t0 = time.perf_counter()
    if fast:
        for case in cases:
            passages = passages_fast(engine, case)
            tokens[case.id] = sum(count_tokens(p.text) for p in passages)
            if case.answerable and case.expected_keywords:
                context = " ".join(p.text for p in passages)
                recall[case.id] = all(keyword_found(context, k) for k in case.expected_keywords) if passages else None
            if case.answerable and case.expected_sources:
                hits[case.id] = any({p.source, *p.also_in} & set(case.expected_sources) for p in passages)
    else:
        def answer_fn(case: Case):  # noqa: ANN202
            answer = ask(engine, case.question, case.history)
            tokens[case.id] = sum(count_tokens(p.text) for p in answer.passages)
            return answer

        report = run_cases(cases, answer_fn, engine.embed)
        for row in report["cases"]:
            if row["answerable"]:
                recall[row["id"]] = row["context_has_answer"]
                hits[row["id"]] = row["hit"]
    with_keywords = [c for c in cases if c.answerable and c.expected_keywords]
    judged = [v for v in recall.values() if v is not None]
    counted = list(tokens.values())
    return {
        "n": len(cases),
        "n_recall": len(judged),
        "context_recall": round(statistics.fmean(judged), 4) if judged else None,
        "strict_recall": round(sum(bool(recall.get(c.id)) for c in with_keywords) / len(with_keywords), 4) if with_keywords else None,
        "hit_rate": round(statistics.fmean(bool(v) for v in hits.values() if v is not None), 4) if hits else None,
        "tokens_p50": float(np.percentile(counted, 50)) if counted else None,
        "tokens_p90": float(np.percentile(counted, 90)) if counted else None,
        "tokens_mean": round(statistics.fmean(counted), 1) if counted else None,
        "missed": sorted(k for k, v in recall.items() if v is False),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default=",".join(BENCHES))
    parser.add_argument("--configs", default="one-at-a-time", help="comma-separated names, 'one-at-a-time' or 'all'")
    parser.add_argument("--extra", default="", help="more configs: 'name:key=value,key=value;name2:key=value'")
    parser.add_argument("--sets", choices=("lookups", "broad", "both"), default="lookups")
    parser.add_argument("--index-root", type=Path, default=Path("/tmp/sweep-index"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--fast", action="store_true", help="retrieval only (no mock answer, no citation checks)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sweep-out"))
    parser.add_argument("--fresh", action="store_true", help="ignore rows already in --out/results.jsonl")
    args = parser.parse_args()

    extra = parse_extra(args.extra)
    known = {**ONE_AT_A_TIME, **extra}
    if args.configs in ("one-at-a-time", "all"):
        names = list(ONE_AT_A_TIME) + (list(extra) if args.configs == "all" or extra else [])
    else:
        names = [n.strip() for n in args.configs.split(",") if n.strip()] + [n for n in extra if n not in args.configs.split(",")]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)}; known: {', '.join(known)}")
    corpora = [n.strip() for n in args.corpora.split(",") if n.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    done = set()
    if results_path.exists() and not args.fresh:
        for line in results_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done.add((row["config"], row["corpus"], row["set"], row["fast"], row["limit"]))

    shared: dict = {}
    for corpus in corpora:
        bench = BENCHES[corpus]
        labels = {"lookups": bench.sets[0], "broad": bench.sets[1]}
        sets = [args.sets] if args.sets != "both" else ["lookups", "broad"]
        for name in names:
            todo = [s for s in sets if (name, corpus, s, args.fast, args.limit) not in done]
            if not todo:
                continue
            overrides = {"corpus": {"path": str(bench.folder)}, "chroma": {"path": str(args.index_root / corpus)},
                         "llm": {"backend": "mock"}, "eval": {"support_pairs": None}, "retrieval": known[name]}
            settings = load_settings(overrides=overrides)
            t0 = time.perf_counter()
            engine = build_engine(settings, llm=shared.get("llm"), embed_model=shared.get("embed"), auto_ingest=False)
            if engine.index.count() == 0:
                raise SystemExit(f"{args.index_root / corpus}: empty index (copy the bench index there first)")
            shared.setdefault("llm", engine.llm)
            shared.setdefault("embed", engine.embed_model)
            built = time.perf_counter() - t0
            for label in todo:
                cases = load_testset(ROOT / "eval" / labels[label])[: args.limit]
                row = {"config": name, "retrieval": known[name], "corpus": corpus, "set": label, "fast": args.fast,
                       "limit": args.limit, "build_s": round(built, 1), **measure(engine, cases, args.fast)}
                with results_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
                print(f"{corpus:8} {label:7} {name:12} recall {row['context_recall']}  strict {row['strict_recall']}  "
                      f"hit {row['hit_rate']}  tok p50 {row['tokens_p50']}  ({row['seconds']} s)", file=sys.stderr, flush=True)
    print(table(results_path, names, corpora, args))
    return 0


def table(path: Path, names: list[str], corpora: list[str], args: argparse.Namespace) -> str:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    sets = [args.sets] if args.sets != "both" else ["lookups", "broad"]
    got = {(r["config"], r["corpus"], r["set"]): r for r in rows if r["fast"] == args.fast and r["limit"] == args.limit}
    lines = []
    for label in sets:
        header = f"{label:7} {'config':12}" + "".join(f" {c:>14}" for c in corpora) + f" {'mean':>14}"
        lines += [f"context_recall / median passage tokens ({'fast' if args.fast else 'ask'})", header, "-" * len(header)]
        for name in names:
            cells, recalls, toks = [], [], []
            for corpus in corpora:
                r = got.get((name, corpus, label))
                if r is None or r["context_recall"] is None:
                    cells.append(f" {'–':>14}")
                    continue
                recalls.append(r["context_recall"])
                toks.append(r["tokens_p50"])
                cells.append(f" {r['context_recall']:>7.3f} /{r['tokens_p50']:>5.0f}")
            mean = f" {statistics.fmean(recalls):>7.3f} /{statistics.fmean(toks):>5.0f}" if recalls else f" {'–':>14}"
            lines.append(f"{label:7} {name:12}" + "".join(cells) + mean)
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
