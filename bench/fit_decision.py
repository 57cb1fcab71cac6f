"""Can a decision fitted on labelled drafts beat the answer decision's rule (rag/decision.py)? Leave one corpus out.

    .venv/bin/python bench/cross_corpus.py --starter none --out reports/drafts   # every corpus: the labelled drafts
    .venv/bin/python bench/fit_decision.py reports/drafts

Every draft the pipeline weighed, shown or withheld, carries its signals (rag.schema.Signals)
and a label from the case it answers (rag.evaluate's draft_right): right when it holds the
case's keywords (and for a broad question 60% of its key points), wrong otherwise, and wrong
for every draft to an unanswerable question. For each corpus in turn, each model (a logistic
regression, a depth-3 tree, gradient boosting; scikit-learn) is fitted on the other corpora's
drafts, with the threshold that maximises right drafts shown minus COST x wrong ones shown
there, and is scored on the corpus left out, beside the rule (whose thresholds are fixed) and
beside showing every draft. Cases never weighed (nothing retrieved, the model's own refusal)
count as refused for all. It prints, per model and cost, the right and wrong drafts shown over
all left-out corpora, then per corpus and set the rule against the fitted model that showed
the most right drafts for no more wrong ones than the rule (if any does).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.decision import withheld  # noqa: E402
from rag.grounding import Verdict  # noqa: E402
from rag.schema import Signals  # noqa: E402
from rag.settings import AnswerSettings  # noqa: E402

MAX_UNCOVERED = AnswerSettings().max_uncovered_share
FEATURES = tuple("log_sentences" if name == "sentences" else name for name in Signals.model_fields)  # Signals.vector()'s order


@dataclass
class Case:
    corpus: str
    set: str
    answerable: bool
    right: bool  # the draft (shown or not) is what the case asks for
    signals: Signals | None  # None: no draft was weighed

    @property
    def x(self) -> list[float]:
        assert self.signals is not None
        return self.signals.vector()

    def rule_shows(self) -> bool:
        """What rag.decision's rule does with this draft, at the default settings."""
        return self.signals is not None and withheld(self.signals, Verdict(None), [], MAX_UNCOVERED) is None


def load(folder: Path) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*-rag.json")):
        corpus, kind, _ = path.stem.rsplit("-", 2)
        for r in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            if r.get("error"):
                continue
            weighed = r.get("signals") is not None
            cases.append(Case(corpus, kind, r["answerable"], bool(r.get("draft_right")), Signals.model_validate(r["signals"]) if weighed else None))
    return cases


def fitted(make, cost: float, train: list[Case]):  # noqa: ANN001, ANN201
    """A model fitted on `train`'s weighed drafts and its threshold; returns a function: case -> shown."""
    weighed = [c for c in train if c.signals is not None]
    model = make().fit(np.array([c.x for c in weighed]), np.array([c.right for c in weighed]))
    scored = sorted(zip(model.predict_proba(np.array([c.x for c in weighed]))[:, 1], (c.right for c in weighed)), key=lambda t: -t[0])
    threshold, gain, best = 1.01, 0.0, 0.0
    for p, right in scored:
        gain += 1.0 if right else -cost
        if gain > best:
            threshold, best = p, gain
    return lambda c: c.signals is not None and model.predict_proba(np.array([c.x]))[0, 1] >= threshold


def leave_one_out(cases: list[Case], make, cost: float) -> dict[int, bool]:  # noqa: ANN001
    """Each case's shown/withheld, by the model fitted without its corpus."""
    shown = {}
    for corpus in dict.fromkeys(c.corpus for c in cases):
        shows = fitted(make, cost, [c for c in cases if c.corpus != corpus])
        shown |= {id(c): shows(c) for c in cases if c.corpus == corpus}
    return shown


def figures(cases: list[Case], shows) -> dict:  # noqa: ANN001
    answerable = [c for c in cases if c.answerable]
    unanswerable = [c for c in cases if not c.answerable]
    shown = [shows(c) for c in cases]
    share = lambda n, d: round(n / d, 2) if d else None  # noqa: E731
    return {
        "n": len(cases),
        "correct": share(sum(c.right and s for c, s in zip(cases, shown)), len(answerable)),
        "false refusals": share(sum(c.answerable and not s for c, s in zip(cases, shown)), len(answerable)),
        "refused correct drafts": sum(c.right and not s for c, s in zip(cases, shown)),
        "unanswerable refused": share(sum(not c.answerable and not s for c, s in zip(cases, shown)), len(unanswerable)),
        "wrong but ✅": sum(s and not c.right and c.signals.supported_share == 1 for c, s in zip(cases, shown)),
        "wrong shown": sum(s and not c.right for c, s in zip(cases, shown)),
    }


def auc(pairs: list[tuple[float, bool]]) -> float | None:
    """How well a score ranks right drafts above wrong ones (None with only one kind)."""
    labels = [right for _, right in pairs]
    return round(float(roc_auc_score(labels, [p for p, _ in pairs])), 3) if 0 < sum(labels) < len(labels) else None


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


MODELS = {
    "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "tree (depth 3)": lambda: DecisionTreeClassifier(max_depth=3, min_samples_leaf=15, random_state=0),
    "gradient boosting": lambda: GradientBoostingClassifier(max_depth=2, n_estimators=60, subsample=0.8, random_state=0),
}
COSTS = (0.5, 1.0, 1.5, 2.0)


def totals(cases: list[Case], shows) -> tuple[int, int, int]:  # noqa: ANN001
    """Right drafts shown, wrong ones shown, and wrong ones shown with every sentence ✅."""
    shown = [c for c in cases if shows(c)]
    wrong = [c for c in shown if not c.right]
    return sum(c.right for c in shown), len(wrong), sum(c.signals.supported_share == 1 for c in wrong)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drafts", type=Path, help="a folder of bench/cross_corpus.py reports")
    args = parser.parse_args()
    cases = load(args.drafts)
    if len({c.corpus for c in cases}) < 2:
        parser.error(f"{args.drafts} needs *-rag.json reports of two corpora at least")
    right = sum(c.right for c in cases)
    print(f"{len(cases)} cases, {sum(c.signals is not None for c in cases)} weighed drafts, {right} right; "
          f"AUC of each signal for a right draft: " + ", ".join(
              f"{name} {auc([(c.signals.vector()[i], c.right) for c in cases if c.signals])}" for i, name in enumerate(FEATURES)))
    rows = [["decision", "cost", "right shown", "wrong shown", "wrong ✅"], ["the rule", "–", *map(str, totals(cases, Case.rule_shows))],
            ["every draft", "–", *map(str, totals(cases, lambda c: c.signals is not None))]]
    best: tuple[int, str, dict] | None = None
    rule = totals(cases, Case.rule_shows)
    for name, make in MODELS.items():
        for cost in COSTS:
            shown = leave_one_out(cases, make, cost)
            t = totals(cases, lambda c: shown[id(c)])
            rows.append([name, str(cost), *map(str, t)])
            if t[1] <= rule[1] and (best is None or t[0] > best[0]):
                best = (t[0], f"{name}, cost {cost}", shown)
    print("\nOver every corpus, each left out of its own fit:\n" + table(rows))
    if best is None:
        print("\nNo fitted decision shows as few wrong drafts as the rule.")
        return 0
    detail = [["left out", "set", "decision", "n", "correct", "false ref.", "correct withheld", "unans. ref.", "wrong ✅", "wrong shown"]]
    for corpus in dict.fromkeys(c.corpus for c in cases):
        for kind in dict.fromkeys(c.set for c in cases if c.corpus == corpus):
            part = [c for c in cases if c.corpus == corpus and c.set == kind]
            for label, shows in (("the rule", Case.rule_shows), (best[1], lambda c: best[2][id(c)]),
                                 ("every draft", lambda c: c.signals is not None)):
                detail.append([corpus, kind, label, *(str("–" if v is None else v) for v in figures(part, shows).values())])
    print(f"\nPer corpus: the rule against {best[1]} (the most right drafts for no more wrong ones than the rule):\n" + table(detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
