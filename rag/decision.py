"""The answer decision: may a draft be shown, or is it withheld? Measured signals, then one rule over them.

Every weighed draft gets the same signals (rag.schema.Signals: retrieval score, the question
words its cited passages miss, the sentences matched to a passage sentence, the ✅ share and
the judge's support scores), whether it is shown or withheld, so `rag eval` reports carry
labelled drafts to fit a decision on (bench/fit_decision.py).

The rule is the three gates measured since issue 10, over those signals: a sentence matched,
at most `answer.max_uncovered_share` of the question's subject words missing, one sentence ✅.
Measured against it (bench/fit_decision.py, 387 labelled drafts of 411 cases over five corpora,
each model fitted with its corpus left out): a logistic regression, a depth-3 tree and gradient
boosting over the same signals never showed as many right drafts for as few wrong ones. Over all
five, the rule showed 162 right and 78 wrong; the best fitted one (the tree, a wrong answer
costing one right one) 145 and 58, even with the rule on the three left-out corpora (47 right)
with fewer wrong (42 against 56), but 17 right answers fewer on the seeds and SQLite. No signal
separates right drafts from wrong ones well across corpora (AUC 0.63-0.76 each; the judge's
mean support is the best), so the rule stays, and a better signal is what would change it.
"""

from __future__ import annotations

from typing import Sequence

from rag.citations import Attribution
from rag.grounding import Verdict
from rag.schema import SentenceCheck, Signals


def sentence_score(check: SentenceCheck) -> float:
    """A sentence's support as a number under either check: the judge's score, else 1 for ✅ and 0 for ⚠️."""
    return check.support if check.support is not None else float(check.supported)


def measure(best_score: float, attribution: Attribution, verdict: Verdict, checks: Sequence[SentenceCheck], broad: bool) -> Signals:
    scores = [sentence_score(c) for c in checks] or [0.0]
    wanted = len(verdict.question_terms)
    return Signals(
        best_score=round(best_score, 4),
        uncovered_share=round(len(verdict.uncovered_terms) / wanted, 4) if wanted else 0.0,
        matched_share=round(sum(s.supported for s in attribution.sentences) / max(len(attribution.sentences), 1), 4),
        supported_share=round(sum(c.supported for c in checks) / max(len(checks), 1), 4),
        mean_support=round(sum(scores) / len(scores), 4),
        min_support=round(min(scores), 4),
        sentences=len(attribution.sentences),
        broad=broad,
    )


def withheld(signals: Signals, verdict: Verdict, checks: Sequence[SentenceCheck], max_uncovered_share: float) -> str | None:
    """Why the draft is withheld, or None to show it."""
    if signals.matched_share == 0:
        return "the answer is not supported by the passages"
    if signals.uncovered_share > max_uncovered_share:
        return f"the passages do not address the question ({', '.join(sorted(verdict.uncovered_terms))} not found)"
    if signals.supported_share == 0:
        why = "; ".join(dict.fromkeys(c.reason for c in checks if c.reason))
        return f"the passages do not state what the draft says ({why})"
    return None
