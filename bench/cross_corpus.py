"""The cross-corpus benchmark: every corpus, lookups and broad questions, ours beside the LlamaIndex starter.

    .venv/bin/python bench/cross_corpus.py [--corpora seeds,sqlite,gnuplot,git,man] [--limit N] [--sets lookups,broad] [--starter all|lookups|none]
                                           [--index-root ~/.cache/rag/bench-index] [--out reports/cross]

Five corpora of different genres and formats: the seeds (news, in the repository), SQLite's
HTML pages, gnuplot's 311-page PDF manual, Git's AsciiDoc guides and 48 section-7 manual
pages (the last four fetched from pinned Debian packages by eval/fetch_corpus.py into
~/.cache/rag/corpora/). The seeds and SQLite sets were written beside the rules (tuning
corpora); the sets under eval/blind/ were written by helper agents that saw only the
documents, before any change they measure (left-out corpora).

Each corpus gets its own index under --index-root (kept between runs: a second run only
checks it; give two checkouts compared side by side their own root), one LLM and one embedder serve them all, and the support pairs'
verifier measurement is skipped (`rag eval` has it). Prints one table: per corpus and kind,
correct, false refusals, refusal accuracy, wrong-but-✅, key points, first token and total
p50, with the starter's row under ours; writes each report as JSON under --out (with every
weighed draft's signals and label: bench/fit_decision.py fits decisions on them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_starter import starter_answer_fn  # noqa: E402

from rag.engine import build_engine  # noqa: E402
from rag.evaluate import Case, evaluate, load_testset, run_cases  # noqa: E402
from rag.settings import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "rag"


@dataclass(frozen=True)
class Bench:
    name: str
    genre: str
    sets: tuple[str, str]  # lookups, broad (paths under eval/)
    tuned: bool  # the rules were written beside these sets

    @property
    def folder(self) -> Path:
        return ROOT / "seeds" if self.name == "seeds" else CACHE / "corpora" / self.name


BENCHES = {
    "seeds": Bench("seeds", "news (txt)", ("testset.yaml", "broad_testset.yaml"), True),
    "sqlite": Bench("sqlite", "reference (HTML)", ("sqlite_testset.yaml", "sqlite_broad_testset.yaml"), True),
    "gnuplot": Bench("gnuplot", "manual (PDF)", ("blind/gnuplot_testset.yaml", "blind/gnuplot_broad_testset.yaml"), False),
    "git": Bench("git", "handbooks (AsciiDoc txt)", ("blind/git_testset.yaml", "blind/git_broad_testset.yaml"), False),
    "man": Bench("man", "man pages (txt)", ("blind/man_testset.yaml", "blind/man_broad_testset.yaml"), False),
}

COLUMNS = ("correct", "false_refusals", "refusal_accuracy", "wrong_but_verified", "key_point_coverage", "ttft_p50_s", "latency_p50_s",
           "prefill_tok_s")
HEADER = ("corpus", "set", "pipeline", "n", "correct", "false ref.", "unans. ref.", "wrong ✅", "key pts", "1st tok p50", "total p50",
          "prefill tok/s")


def fetch(bench: Bench) -> None:
    """The corpus folder, fetched from its Debian package when it is not there yet."""
    if bench.name != "seeds":
        subprocess.run([sys.executable, str(ROOT / "eval" / "fetch_corpus.py"), "--corpus", bench.name, str(bench.folder)],
                       check=True, stdout=subprocess.DEVNULL)


def row(bench: Bench, label: str, pipeline: str, summary: dict) -> list[str]:
    cells = []
    for key in COLUMNS:
        value = summary.get(key)
        cells.append("–" if value is None else f"{value:.0f}" if key == "prefill_tok_s" else f"{value:.2f}" if isinstance(value, float)
                     else str(value))
    return [f"{bench.name}{'' if bench.tuned else ' (left out)'}", label, pipeline, str(summary["n"]), *cells]


def run(bench: Bench, shared: dict, args: argparse.Namespace) -> list[list[str]]:
    fetch(bench)
    overrides = {"corpus": {"path": str(bench.folder)}, "chroma": {"path": str(args.index_root / bench.name)},
                 "eval": {"support_pairs": None}}
    settings = load_settings(overrides=overrides)
    engine = build_engine(settings, llm=shared.get("llm"), embed_model=shared.get("embed"))
    engine.ingest()
    shared.setdefault("llm", engine.llm)
    shared.setdefault("embed", engine.embed_model)
    rows, starter_fn = [], starter_answer_fn(engine) if args.starter != "none" else None
    for label, name in zip(("lookups", "broad"), bench.sets):
        if label not in args.sets:
            continue
        cases: list[Case] = load_testset(ROOT / "eval" / name)[: args.limit]
        progress = lambda i, n, r: print(f"  {bench.name} {label} {i}/{n} {r.id}: {'pass' if r.passed else 'FAIL'}", file=sys.stderr)  # noqa: E731
        reports = {"rag": evaluate(engine, cases, progress)}
        if starter_fn and (args.starter == "all" or label == "lookups"):
            reports["starter"] = run_cases(cases, starter_fn, engine.embed, progress)
        for pipeline, report in reports.items():
            (args.out / f"{bench.name}-{label}-{pipeline}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
            rows.append(row(bench, label, pipeline, report["summary"]))
    return rows


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(HEADER), *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [list(HEADER), *rows]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default=",".join(BENCHES), help=f"comma-separated, of {', '.join(BENCHES)}")
    parser.add_argument("--limit", type=int, help="the first N cases of each set")
    parser.add_argument("--starter", choices=("all", "lookups", "none"), default="all",
                        help="which sets the LlamaIndex starter answers too (it doubles the time)")
    parser.add_argument("--sets", default="lookups,broad", type=lambda v: {s.strip() for s in v.split(",")},
                        help="which question sets of each corpus: lookups, broad or both")
    parser.add_argument("--index-root", type=Path, default=CACHE / "bench-index", help="one index per corpus under it")
    parser.add_argument("--out", type=Path, default=Path("reports/cross"))
    args = parser.parse_args()
    names = [n.strip() for n in args.corpora.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown corpus {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    shared: dict = {}
    rows = []
    for name in names:
        rows += run(BENCHES[name], shared, args)
        print(table(rows), file=sys.stderr)  # the table so far, in case a later corpus fails
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
