"""Scripted evaluation: the test-set format, running cases through the pipeline, and metrics.

Cases are answered by the same `ask` every other door uses, so the scores describe what
users get. The scorer only reads Answers; it never answers by itself.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag.errors import ConfigError, RagError
from rag.kinds import Kind
from rag.schema import Answer, Turn


class Case(BaseModel):
    """One test case, as written in a YAML list or a JSONL line."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    reference_answer: str
    expected_keywords: list[str] = Field(default_factory=list)
    expected_sources: list[str] = Field(default_factory=list)
    answerable: bool = True
    history: list[Turn] = Field(default_factory=list)
    kind: Kind = Field(Kind.LOOKUP, description="The kind of answer the question asks for (rag.kinds).")
    key_points: list[str] = Field(
        default_factory=list, description="Broad questions: the points a good answer makes, each a keyword with |-separated alternatives."
    )
    source_hashes: dict[str, str] = Field(
        default_factory=dict, description="Content hash of each document the case rests on when it was written (cases from feedback): "
        "a document changed since makes the case stale."
    )


def load_testset(path: Path) -> list[Case]:
    """Read a YAML list or JSONL file of cases; errors name the case and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read test set {path}: {exc}") from exc
    raw = _parse_jsonl(text, path) if path.suffix.lower() in (".jsonl", ".ndjson") else _parse_yaml(text, path)
    cases: list[Case] = []
    for i, item in enumerate(raw, start=1):
        try:
            cases.append(Case.model_validate(item))
        except ValidationError as exc:
            label = item.get("id", f"#{i}") if isinstance(item, dict) else f"#{i}"
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: case {label} is invalid: {problems}") from exc
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path}: duplicate case ids: {', '.join(duplicates)}")
    if not cases:
        raise ConfigError(f"{path}: the test set has no cases.")
    return cases


def _parse_yaml(text: str, path: Path) -> list:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from exc
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a YAML test set is a list of cases.")
    return data


def _parse_jsonl(text: str, path: Path) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg}).") from exc
    return rows


def keyword_found(answer: str, keyword: str) -> bool:
    """An expected keyword is present when any of its |-separated alternatives is (case-insensitive).

    An alternative must start at a word start, so "US" does not match "Russia" while a stem
    such as "territor" still matches "territory".
    """
    for alt in (a.strip() for a in keyword.split("|")):
        if alt and re.search(r"(?<!\w)" + re.escape(alt), answer, re.IGNORECASE):
            return True
    return False


class CaseResult(BaseModel):
    id: str
    question: str
    answerable: bool
    reference_answer: str
    answer: str
    refused: bool
    refusal_reason: str | None = None
    draft: str | None = None
    citations: list[dict] = Field(default_factory=list)
    sentences: list[dict] = Field(default_factory=list, description="Each answer sentence's support state, with its quotes.")
    left_out: list[str] = Field(default_factory=list, description="Draft sentences left out of a broad answer (rag.schema.Answer.left_out).")
    support_check: str = ""
    standalone_question: str | None = None
    retrieved_sources: list[str] = Field(default_factory=list)
    expected_sources: list[str] = Field(default_factory=list)
    keywords_missing: list[str] = Field(default_factory=list)
    correct: bool | None = None  # answerable cases
    wrong_but_verified: bool = False  # shown, wrong (or should have been refused), and every sentence ✅
    refused_correctly: bool | None = None  # unanswerable cases
    hit: bool | None = None
    reciprocal_rank: float | None = None
    context_has_answer: bool | None = None  # every expected keyword is in the passages given to the LLM
    citations_valid: int = 0
    citations_total: int = 0
    cited_sources_expected: int = 0
    cited_sources_total: int = 0
    similarity: float | None = None
    judge_faithful: bool | None = None  # LLM-as-judge, when configured
    judge_correctness: float | None = None  # 1..5
    latency_s: float = 0.0
    first_token_s: float | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    passed: bool = False
    kind: str = "lookup"  # the test set's label
    kind_found: str | None = None  # what the classifier said
    key_points_missing: list[str] = Field(default_factory=list)
    key_point_coverage: float | None = None
    all_supported: bool | None = None  # shown, and every sentence ✅
    signals: dict | None = None  # what the answer decision weighed (rag.decision), when a draft was weighed
    draft_right: bool | None = None  # that draft, shown or withheld, answers the case: the label bench/fit_decision.py fits on
    stale: list[str] = Field(default_factory=list, description="Documents the case rests on that changed since it was written.")


# A broad answer is correct when it makes at least this share of its case's key points (and every expected keyword).
KEY_POINT_SHARE = 0.6


def score(case: Case, answer: Answer, similarity: float | None) -> CaseResult:
    """Every metric's outcome for one case."""
    retrieved = [r.source for r in answer.retrieved]
    ranked = [{r.source, *r.also_in} for r in answer.retrieved]  # a folded duplicate's sources share its rank
    result = CaseResult(
        id=case.id,
        question=case.question,
        answerable=case.answerable,
        reference_answer=case.reference_answer,
        answer=answer.answer,
        refused=answer.refused,
        refusal_reason=answer.refusal_reason,
        draft=answer.draft,
        citations=[c.model_dump(include={"n", "source", "quote", "start", "end", "verified", "score"}) for c in answer.citations],
        retrieved_sources=retrieved,
        expected_sources=case.expected_sources,
        similarity=similarity,
        latency_s=answer.timings.total_s,
        first_token_s=answer.timings.first_token_s,
        prompt_tokens=answer.prompt_tokens,
        citations_valid=sum(c.verified for c in answer.citations),
        citations_total=len(answer.citations),
        sentences=[c.model_dump() for c in answer.sentences],
        left_out=answer.left_out,
        support_check=answer.support_check,
        standalone_question=answer.standalone_question,
        signals=answer.signals.model_dump() if answer.signals else None,
    )
    result.kind, result.kind_found = case.kind.value, answer.kind
    result.all_supported = not answer.refused and bool(answer.sentences) and all(c.supported for c in answer.sentences)
    cited = {c.source for c in answer.citations}
    result.cited_sources_total = len(cited)
    if answer.signals is not None:
        result.draft_right = case.answerable and _answers(case, answer.draft or answer.answer)[2]
    if case.answerable:
        result.keywords_missing, result.key_points_missing, right = _answers(case, answer.answer)
        result.correct = not answer.refused and right
        if case.key_points:
            result.key_point_coverage = round(1 - len(result.key_points_missing) / len(case.key_points), 4)
        result.cited_sources_expected = len(cited & set(case.expected_sources)) if case.expected_sources else len(cited)
        if case.expected_keywords and answer.passages:
            context = " ".join(p.text for p in answer.passages)
            result.context_has_answer = all(keyword_found(context, k) for k in case.expected_keywords)
        if case.expected_sources:
            rank = next((i for i, s in enumerate(ranked, start=1) if s & set(case.expected_sources)), None)
            result.hit = rank is not None
            result.reciprocal_rank = 1 / rank if rank else 0.0
        result.passed = bool(result.correct)
    else:
        result.refused_correctly = answer.refused
        result.passed = answer.refused
    all_green = bool(answer.sentences) and all(c.supported for c in answer.sentences)
    result.wrong_but_verified = not answer.refused and not result.passed and all_green
    return result


def _answers(case: Case, text: str) -> tuple[list[str], list[str], bool]:
    """The case's keywords and key points missing from `text`, and whether it answers the case (every
    keyword, and KEY_POINT_SHARE of the key points)."""
    keywords = [k for k in case.expected_keywords if not keyword_found(text, k)]
    points = [k for k in case.key_points if not keyword_found(text, k)]
    return keywords, points, not keywords and (not case.key_points or 1 - len(points) / len(case.key_points) >= KEY_POINT_SHARE)


def _mean(values: Iterable[float | bool | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(statistics.fmean(kept), 4) if kept else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)), 3)


def summarize(results: Sequence[CaseResult]) -> dict:
    """The report's summary: answer, refusal, retrieval, citation and latency metrics."""
    answerable = [r for r in results if r.answerable and r.error is None]
    unanswerable = [r for r in results if not r.answerable and r.error is None]
    valid = sum(r.citations_valid for r in results)
    total_citations = sum(r.citations_total for r in results)
    cited_expected = sum(r.cited_sources_expected for r in answerable)
    cited_total = sum(r.cited_sources_total for r in answerable)
    latencies = [r.latency_s for r in results if r.error is None]
    ttfts = [r.first_token_s for r in results if r.first_token_s is not None]
    return {
        "n": len(results),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "errors": sum(r.error is not None for r in results),
        "correct": _mean(r.correct for r in answerable),
        "correct_and_supported": _correct_and_supported(answerable),
        "refusal_accuracy": _mean(r.refused_correctly for r in unanswerable),
        "false_refusals": _mean(r.refused for r in answerable),
        "hit_rate": _mean(r.hit for r in answerable),
        "mrr": _mean(r.reciprocal_rank for r in answerable),
        "context_recall": _mean(r.context_has_answer for r in answerable),
        "citation_validity": round(valid / total_citations, 4) if total_citations else None,
        "sentence_support": _mean(s["supported"] for r in results if not r.refused for s in r.sentences),
        **_sentence_shares(results),
        "wrong_but_verified": sum(r.wrong_but_verified for r in results),
        "wrong_but_verified_ids": [r.id for r in results if r.wrong_but_verified],
        "source_precision": round(cited_expected / cited_total, 4) if cited_total else None,
        "semantic_similarity": _mean(r.similarity for r in results),
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "ttft_p50_s": _percentile(ttfts, 50),
        "prompt_tokens_p50": _percentile([r.prompt_tokens for r in results if r.prompt_tokens], 50),
        "key_point_coverage": _mean(r.key_point_coverage for r in answerable),
        "kind_accuracy": _mean(r.kind == r.kind_found for r in results if r.kind_found is not None),
        "by_kind": by_kind(results),
        **_judge_summary(results),
    }


def _correct_and_supported(answerable: Sequence[CaseResult]) -> float | None:
    """Answered with the key points (or keywords) and every shown sentence ✅: the broad questions' target."""
    return _mean(bool(r.correct and r.all_supported) for r in answerable)


def _sentence_shares(results: Sequence[CaseResult]) -> dict[str, float | None]:
    """Of the answered cases' draft sentences: the share shown in the documents' own words, and the share left out."""
    answered = [r for r in results if not r.refused]
    left_out = sum(len(r.left_out) for r in answered)
    drafted = sum(len(r.sentences) for r in answered) + left_out
    return {"sentences_quoted": _mean(s.get("quoted_for") is not None for r in answered for s in r.sentences),
            "sentences_left_out": round(left_out / drafted, 4) if drafted else None}


def by_kind(results: Sequence[CaseResult]) -> dict[str, dict]:
    """Per kind of question: answered, correct, every sentence supported, refused when unanswerable, latency."""
    table = {}
    for kind in dict.fromkeys(r.kind for r in results):
        rows = [r for r in results if r.kind == kind and r.error is None]
        answerable = [r for r in rows if r.answerable]
        table[kind] = {
            "n": len(rows),
            "answered": _mean(not r.refused for r in answerable),
            "correct": _mean(r.correct for r in answerable),
            "correct_and_supported": _correct_and_supported(answerable),
            **_sentence_shares(answerable),
            "refusal_accuracy": _mean(r.refused_correctly for r in rows if not r.answerable),
            "ttft_p50_s": _percentile([r.first_token_s for r in rows if r.first_token_s is not None], 50),
            "latency_p50_s": _percentile([r.latency_s for r in rows], 50),
        }
    return table


def _judge_summary(results: Sequence[CaseResult]) -> dict:
    faithful = [r.judge_faithful for r in results if r.judge_faithful is not None]
    scores = [r.judge_correctness for r in results if r.judge_correctness is not None]
    if not faithful and not scores:
        return {}
    return {
        "judge_faithfulness": round(sum(faithful) / len(faithful), 4) if faithful else None,
        "judge_correctness": round(statistics.fmean(scores), 3) if scores else None,
    }


AnswerFn = Callable[[Case], Answer]
EmbedFn = Callable[[list[str]], np.ndarray]
JudgeFn = Callable[[Case, Answer, CaseResult], None]


def run_cases(
    cases: Sequence[Case],
    answer_fn: AnswerFn,
    embed: EmbedFn,
    progress: Callable[[int, int, CaseResult], None] | None = None,
    judge: JudgeFn | None = None,
) -> dict:
    """Answer and score every case; a failing case is recorded with its error, the run goes on."""
    results: list[CaseResult] = []
    for i, case in enumerate(cases, start=1):
        try:
            answer = answer_fn(case)
            vectors = embed([answer.answer, case.reference_answer])
            result = score(case, answer, round(float(vectors[0] @ vectors[1]), 4))
            if judge is not None:
                judge(case, answer, result)
        except RagError as exc:
            result = CaseResult(
                id=case.id, question=case.question, answerable=case.answerable, reference_answer=case.reference_answer,
                answer="", refused=False, expected_sources=case.expected_sources, error=str(exc),
            )
        results.append(result)
        if progress:
            progress(i, len(cases), result)
    return {"summary": summarize(results), "cases": [r.model_dump() for r in results]}


def stale_sources(hashes: dict[str, str], current: dict[str, str]) -> list[str]:
    """The documents a case (or a feedback record) rests on that changed or left the corpus since it was written."""
    return [source for source, digest in hashes.items() if current.get(source) != digest]


def evaluate(
    engine,  # noqa: ANN001 - rag.engine.Engine (imported lazily: the scorer needs no models)
    cases: Sequence[Case],
    progress: Callable[[int, int, CaseResult], None] | None = None,
    judge: JudgeFn | None = None,
) -> dict:
    """Run the test set through the same `ask` the CLI and the app use."""
    from rag.answer import ask
    from rag.verify import load_pairs

    path = engine.settings.eval.support_pairs
    # Read first: a malformed file stops the run before it starts. A missing one (another working
    # folder) only leaves the verifier unmeasured, and the summary says so.
    pairs = load_pairs(path) if path is not None and path.exists() else []
    speeds = [prefill_rate(engine)]
    report = run_cases(cases, lambda case: ask(engine, case.question, case.history), engine.embed, progress, judge)
    speeds.append(prefill_rate(engine))
    current = engine.index.source_hashes()
    for case, row in zip(cases, report["cases"]):
        row["stale"] = stale_sources(case.source_hashes, current)
    report["summary"]["stale_cases"] = sum(bool(row["stale"]) for row in report["cases"])
    report["pipeline"] = {"name": "rag", "backend": engine.backend.model_dump()}
    # Measured before and after the cases, the slower counts: a machine busy with other work during
    # part of the run (CI's neighbours, a second process) is then not taken for a fast one.
    report["summary"]["prefill_tok_s"] = min((s for s in speeds if s), default=None)
    report["summary"].update(verifier_metrics(engine, pairs))
    if path is not None and not path.exists():
        report["summary"]["support_pairs"] = f"{path} not found: the verifier's precision and recall were not measured"
    return report


def verifier_metrics(engine, pairs: Sequence) -> dict:  # noqa: ANN001
    """Precision and recall of the support check on labelled pairs (eval.support_pairs), when it is the LLM's."""
    from rag.answer import SYSTEM_PROMPT
    from rag.verify import score_pairs

    judge_fn, note = engine.support_judge
    if judge_fn is None or not pairs:
        return {"support_check": note}
    with engine.generation_lock:
        scored = score_pairs(judge_fn, pairs, engine.settings.answer.support_threshold, SYSTEM_PROMPT)
    return {"support_check": note, **scored}


def llm_judge(llm) -> JudgeFn:  # noqa: ANN001
    """LLM-as-judge with LlamaIndex's FaithfulnessEvaluator and CorrectnessEvaluator (answered cases only)."""
    from llama_index.core.evaluation import CorrectnessEvaluator, FaithfulnessEvaluator

    faithfulness = FaithfulnessEvaluator(llm=llm)
    correctness = CorrectnessEvaluator(llm=llm)

    def judge(case: Case, answer: Answer, result: CaseResult) -> None:
        if answer.refused or not case.answerable:
            return
        contexts = [p.text for p in answer.passages]
        try:
            result.judge_faithful = bool(faithfulness.evaluate(query=case.question, response=answer.answer, contexts=contexts).passing)
        except Exception:  # a judge's unparsable reply leaves the metric unset for this case
            result.judge_faithful = None
        try:
            result.judge_correctness = correctness.evaluate(
                query=case.question, response=answer.answer, reference=case.reference_answer
            ).score
        except Exception:
            result.judge_correctness = None

    return judge


def prefill_rate(engine) -> float | None:  # noqa: ANN001
    """This machine's prompt speed with the embedded model (tokens/s, measured now); None for other backends."""
    from rag.worker import LocalModel

    if not isinstance(engine.llm, LocalModel):
        return None
    with engine.generation_lock:
        return round(engine.llm.prefill_rate(), 1)


# A machine more than this many times slower than the reference fails the latency limits whatever
# they say: a build without SIMD, a model on the wrong backend, a starved CPU.
MOST_SLOWDOWN = 4.0


def latency_scale(summary: dict, limits: dict) -> float:
    """How much the latency limits (`*_s` in [max]) stretch on this machine: the reference machine's
    prefill rate (`[reference] prefill_tok_s`, where the limits were set) over the rate measured in
    the same run, between 1 (never tighter) and MOST_SLOWDOWN. 1 when either is unknown.

    Prompt evaluation is most of the latency on a CPU, and it runs 3x slower on some machines of
    the same kind (52 against 163 tokens/s, bench/cpu_backend.py): fixed seconds would fail CI on
    the slow one, or let a 3x regression pass on the fast one."""
    reference, measured = limits.get("reference", {}).get("prefill_tok_s"), summary.get("prefill_tok_s")
    if not reference or not measured:
        return 1.0
    return min(max(reference / measured, 1.0), MOST_SLOWDOWN)


def load_limits(path: Path) -> dict:
    """A thresholds file's tables."""
    import tomllib

    return tomllib.loads(path.read_text(encoding="utf-8"))


# The CI gate: a metric may not fall below (min) or rise above (max) its threshold.
def check_thresholds(summary: dict, path: Path) -> list[str]:
    """Metrics outside the thresholds kept in `path` (TOML with [min], [max] and [reference] tables)."""
    limits = load_limits(path)
    scale = latency_scale(summary, limits)
    failures = []
    for metric, floor in limits.get("min", {}).items():
        value = _metric(summary, metric)
        if value is None or value < floor:
            failures.append(f"{metric} = {value} is below the minimum {floor}")
    for metric, ceiling in limits.get("max", {}).items():
        value, timed = _metric(summary, metric), metric.endswith("_s") and scale != 1.0
        ceiling = round(ceiling * scale, 2) if timed else ceiling
        if value is None or value > ceiling:
            why = f" (x{scale:.2f}: this machine prefills {summary['prefill_tok_s']} tokens/s)" if timed else ""
            failures.append(f"{metric} = {value} is above the maximum {ceiling}{why}")
    return failures


def _metric(summary: dict, name: str) -> object:
    """A summary value by name; a dotted name reaches into the per-kind table ("by_kind.summary.correct")."""
    value: object = summary
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
