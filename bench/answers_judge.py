"""A candidate signal for the answer decision, measured offline: does the model say the draft answers the question?

    .venv/bin/python bench/answers_judge.py reports/cross [--corpora gnuplot,git,man,sqlite,seeds] [--index-root DIR]

For every weighed lookup draft in bench/cross_corpus.py's reports, the model reads the answer
prompt's own passages and question (so its KV-cached prefix is reused), then the draft, and its
P(yes) to "Does the draft answer the question, as the passages state it?" is the signal. Prints
per corpus its AUC for a right draft beside the judge's mean support (rag.schema.Signals), over
all weighed drafts and over those rag.decision's rule shows; then, per threshold, the right and
wrong drafts the rule would still show if it also withheld drafts below it, tuned corpora apart
from left-out ones. Not in the pipeline: a lead (issue 36), until a real run measures it.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_index.core.base.llms.types import ChatMessage, MessageRole  # noqa: E402
from rag.answer import build_messages  # noqa: E402
from rag.citations import strip_markers  # noqa: E402
from rag.engine import build_engine  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.schema import Signals  # noqa: E402
from fit_decision import MAX_UNCOVERED, auc  # noqa: E402
from rag.decision import withheld  # noqa: E402
from rag.grounding import Verdict  # noqa: E402
from cross_corpus import BENCHES, CACHE  # noqa: E402

ASK = "\nDraft answer: {a}\nDoes the draft answer the question, as the passages state it? Reply yes or no."
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def measure(corpus: str, reports: Path, index_root: Path, shared: dict) -> list[tuple[float, bool, float, bool]]:
    """(P(yes), draft right, mean support, shown by the rule) per weighed lookup draft of one corpus."""
    bench = BENCHES[corpus]
    settings = load_settings(overrides={"corpus": {"path": str(bench.folder)}, "chroma": {"path": str(index_root / corpus)}})
    engine = build_engine(settings, llm=shared.get("llm"), embed_model=shared.get("embed"), auto_ingest=False)
    shared.setdefault("llm", engine.llm)
    shared.setdefault("embed", engine.embed_model)
    judge, _ = engine.support_judge
    rows = []
    for r in json.loads((reports / f"{corpus}-lookups-rag.json").read_text(encoding="utf-8"))["cases"]:
        if r.get("signals") is None:
            continue
        question = r.get("standalone_question") or r["question"]
        messages = build_messages(question, engine.retriever.retrieve(question, widened=True).passages)
        draft = " ".join(strip_markers(r["draft"] or r["answer"])[0].split())
        user = messages[1].content.split("\nQuestion: ")[0] + f"\nQuestion: {question}" + ASK.format(a=draft)
        signals = Signals.model_validate(r["signals"])
        rows.append((judge([messages[0], ChatMessage(role=MessageRole.USER, content=user)]), bool(r["draft_right"]),
                     signals.mean_support, withheld(signals, Verdict(None), [], MAX_UNCOVERED) is None))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, help="a folder of bench/cross_corpus.py reports")
    parser.add_argument("--corpora", default=",".join(BENCHES))
    parser.add_argument("--index-root", type=Path, default=CACHE / "bench-index")
    args = parser.parse_args()
    shared: dict = {}
    groups: dict[bool, list] = {True: [], False: []}
    for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
        rows = measure(corpus, args.reports, args.index_root, shared)
        groups[BENCHES[corpus].tuned] += rows
        shown = [row for row in rows if row[3]]
        print(f"{corpus}: {len(rows)} drafts; AUC answers-judge {auc([(p, y) for p, y, _, _ in rows])}, mean support "
              f"{auc([(m, y) for _, y, m, _ in rows])}; among the rule's shown: {auc([(p, y) for p, y, _, _ in shown])}, "
              f"{auc([(m, y) for _, y, m, _ in shown])}", flush=True)
    for tuned, rows in groups.items():
        shown = [row for row in rows if row[3]]
        if shown:
            cells = [f"rule {sum(y for _, y, _, _ in shown)} right / {sum(not y for _, y, _, _ in shown)} wrong"]
            cells += [f">= {t}: {sum(y for p, y, _, _ in shown if p >= t)} / {sum(not y for p, y, _, _ in shown if p >= t)}" for t in THRESHOLDS]
            print(f"{'tuned' if tuned else 'left out'}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
