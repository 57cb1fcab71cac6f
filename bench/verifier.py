"""Can the generator judge "does this quote state this sentence?" from its yes/no probabilities?

Groundwork for entailment-level citation checks (issue 13): no NLI model ships offline, so the
embedded model scores each (answer sentence, cited quote) pair by P("yes") against P("no") as
its first reply token, over a prompt that shares the answer prompt's cached opening. For every
test-set answer that the pipeline shows with citations it prints:

  P(yes) for the pair as cited, split by whether the answer is correct (its keywords);
  P(yes) for the same sentence against a quote from another case (a pair that must fail);
  the separation (AUC) of cited-and-correct pairs from swapped pairs, and the time per check.
With --pairs, it scores a hand-labelled set instead (eval/support_pairs.yaml: pairs from such a
run, labelled supported or not) and prints precision and recall of "supported" by threshold.
With --answers, it reads a `rag eval --json-out` report and asks, once per shown answer, whether
its quotes answer the question (an answer-level check, on top of the per-sentence one): it prints
how each question-aware wording separates the answers the eval passed from those it failed.

    .venv/bin/python bench/verifier.py [--limit N]
    .venv/bin/python bench/verifier.py --pairs eval/support_pairs.yaml
    .venv/bin/python bench/verifier.py --answers test-artifacts/eval-seeds.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.answer import SYSTEM_PROMPT, ask, warm_up
from rag.citations import strip_markers
from rag.engine import build_engine
from rag.evaluate import keyword_found, load_testset
from rag.settings import load_settings
from rag.verify import JUDGE_QUESTION, load_pairs, word_coverage
from rag.verify import support_messages as judge_messages


# Wordings of the question put after the quote; --pairs scores each on the labelled pairs.
# "nothing-added" is the one the pipeline uses (rag.verify.JUDGE_QUESTION), times the word coverage.
PROMPTS = {
    "claim": "Question: {question}\nProposed answer: {sentence}\nDoes passage [1] state what the proposed answer says? Reply yes or no.",
    "statement": "Statement: {sentence}\nDoes passage [1] state everything the statement says? Reply yes or no.",
    "nothing-added": JUDGE_QUESTION,
    "answer-nothing-added": "Question: {question}\nAnswer: {sentence}\nIs this answer true according to passage [1], word for word "
                            "in meaning, with nothing added? Reply yes or no.",
    "answers-question": "Question: {question}\nDoes passage [1] answer this question? Reply yes or no.",
    "correct-answer": "Question: {question}\nAnswer: {sentence}\nDoes passage [1] show that this answer to the question is correct? "
                      "Reply yes or no.",
}
# Two checks that must both pass: the lower of their P(yes) is the score.
COMBINED = [("nothing-added", "answers-question"), ("answer-nothing-added", "correct-answer")]


def support_messages(question: str, quote: str, sentence: str, prompt: str = "nothing-added") -> list[ChatMessage]:
    """Same opening as the answer prompt (system prompt, "Passages:"), so its cached KV prefix serves both."""
    return judge_messages(SYSTEM_PROMPT, question, [quote], sentence, PROMPTS[prompt])


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def labelled(engine, path: Path) -> int:  # noqa: ANN001
    """Precision and recall of "supported" on hand-labelled pairs, by threshold, for each prompt."""
    pairs = [p.model_dump() for p in load_pairs(path)]
    positives = sum(p["supported"] for p in pairs)
    print(f"{len(pairs)} labelled pairs ({positives} supported, {len(pairs) - positives} not), {path}")
    by_prompt = {prompt: [engine.llm.yes_probability(support_messages(p["question"], p["quote"], p["sentence"], prompt)) for p in pairs]
                 for prompt in PROMPTS}
    for a, b in COMBINED:
        by_prompt[f"min({a}, {b})"] = [min(x, y) for x, y in zip(by_prompt[a], by_prompt[b])]
    by_prompt["pipeline: nothing-added x word coverage"] = [
        y * word_coverage(p["sentence"], [p["quote"]], p["question"]) for y, p in zip(by_prompt["nothing-added"], pairs)]
    labels = [p["supported"] for p in pairs]
    for prompt, values in by_prompt.items():
        scores = list(zip(values, labels))
        print(f"prompt {prompt!r}: AUC supported vs not {auc([s for s, l in scores if l], [s for s, l in scores if not l]):.3f}")
        for threshold in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
            kept = [label for score, label in scores if score >= threshold]
            precision = sum(kept) / len(kept) if kept else float("nan")
            print(f"  threshold {threshold}: precision {precision:.3f}  recall {sum(kept) / positives:.3f}  "
                  f"unsupported passed {len(kept) - sum(kept)} of {len(pairs) - positives}")
    return 0


# Question-aware wordings for --answers: does the answer's whole set of quotes answer the question?
ANSWER_PROMPTS = ("answers-question", "correct-answer", "answer-nothing-added")


def answer_level(engine, path: Path) -> int:  # noqa: ANN001
    """AUC and keep/reject counts of an answer-level judge over the answers an eval report shows."""
    rows = []
    for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
        if case["refused"] or case["error"]:
            continue
        quotes = list(dict.fromkeys(q for s in case["sentences"] for q in s["quotes"]))
        answer = strip_markers(case["answer"])[0]
        question = case["standalone_question"] or case["question"]
        scores = {name: engine.llm.yes_probability(judge_messages(SYSTEM_PROMPT, question, quotes, answer, PROMPTS[name]))
                  for name in ANSWER_PROMPTS}
        rows.append((bool(case["passed"]), scores))
        print(f"  {case['id']:<32} {'passed' if case['passed'] else 'FAILED'} "
              + " ".join(f"{n} {v:.3f}" for n, v in scores.items()), file=sys.stderr, flush=True)
    good = sum(passed for passed, _ in rows)
    print(f"{len(rows)} shown answers in {path} ({good} passed, {len(rows) - good} failed)")
    for name in ANSWER_PROMPTS:
        passed = [s[name] for ok, s in rows if ok]
        failed = [s[name] for ok, s in rows if not ok]
        print(f"prompt {name!r}: AUC passed vs failed {auc(passed, failed):.3f}")
        for threshold in (0.5, 0.6, 0.7, 0.8):
            print(f"  threshold {threshold}: keeps {sum(v >= threshold for v in passed)} of {len(passed)} passed, "
                  f"rejects {sum(v < threshold for v in failed)} of {len(failed)} failed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--pairs", type=Path, help="hand-labelled pairs (YAML): score these instead of a test-set run")
    parser.add_argument("--answers", type=Path, help="a `rag eval --json-out` report: try an answer-level check on its shown answers")
    args = parser.parse_args()
    settings = load_settings()
    engine = build_engine(settings)
    warm_up(engine)
    if args.pairs:
        return labelled(engine, args.pairs)
    if args.answers:
        return answer_level(engine, args.answers)
    cases = load_testset(settings.eval.testset)
    cases = cases[: args.limit] if args.limit else cases
    rows: list[tuple[str, bool, str, str, str]] = []  # case id, correct, question, sentence, quote
    for case in cases:
        answer = ask(engine, case.question, case.history)
        if answer.refused or not case.answerable:
            continue
        correct = all(keyword_found(answer.answer, k) for k in case.expected_keywords)
        question = answer.standalone_question or answer.question
        rows += [(case.id, correct, question, c.sentence, c.quote) for c in answer.citations]
    scored, timings = [], []
    for i, (case_id, correct, question, sentence, quote) in enumerate(rows):
        other = next(r[4] for r in rows[i + 1:] + rows[:i] if r[0] != case_id)
        start = time.perf_counter()
        cited = engine.llm.yes_probability(support_messages(question, quote, sentence))
        timings.append(time.perf_counter() - start)
        swapped = engine.llm.yes_probability(support_messages(question, other, sentence))
        scored.append((case_id, correct, cited, swapped))
        print(f"  {case_id:<32} {'correct' if correct else 'WRONG  '} cited {cited:.3f}  swapped {swapped:.3f}  | {sentence[:70]}",
              file=sys.stderr, flush=True)
    good = [s[2] for s in scored if s[1]]
    wrong = [s[2] for s in scored if not s[1]]
    swapped = [s[3] for s in scored]
    print(f"\n{len(scored)} cited pairs from {len(cases)} cases; P(yes) medians:")
    print(f"  cited, answer correct    {statistics.median(good) if good else float('nan'):.3f}  (n={len(good)})")
    print(f"  cited, answer wrong      {statistics.median(wrong) if wrong else float('nan'):.3f}  (n={len(wrong)})")
    print(f"  quote of another case    {statistics.median(swapped) if swapped else float('nan'):.3f}  (n={len(swapped)})")
    print(f"AUC cited-correct vs swapped: {auc(good, swapped):.3f}; cited-correct vs cited-wrong: {auc(good, wrong):.3f}")
    for threshold in (0.3, 0.5, 0.7, 0.9):
        kept = sum(p >= threshold for p in good) / len(good) if good else float("nan")
        caught = sum(p < threshold for p in swapped) / len(swapped) if swapped else float("nan")
        caught_wrong = sum(p < threshold for p in wrong) / len(wrong) if wrong else float("nan")
        print(f"  threshold {threshold}: keeps {kept:.0%} of correct pairs, rejects {caught:.0%} of swapped, {caught_wrong:.0%} of wrong")
    print(f"Time per check: median {statistics.median(timings):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
