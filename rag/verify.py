"""Support checks: does the quote an answer sentence cites state what the sentence says?

Lexical overlap (rag.citations) cannot tell "RIA reported the remarks" from "RIA wrote the
article", and no NLI, cross-encoder or extractive-QA model ships offline. The generator
itself is the judge: it reads the cited quote(s) and one answer sentence, and P("yes") against
P("no") as its first reply token (no text is written) is multiplied by the share of the
sentence's content words found in its quotes or the question. On the hand-labelled pairs
(eval/support_pairs.yaml, bench/verifier.py) the product separates supported from unsupported
pairs better (AUC 0.939) than either alone (0.938, 0.818); the threshold is
`answer.support_threshold`. The prompt opens like the answer prompt, so the local model's
cached KV prefix serves both.

Backends that give no token log-probabilities (Ollama's API, the mock, a server that ignores
`logprobs`) keep the lexical check, and every answer says which check it got.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.citations import PassageSentence, SentenceSupport, claim_of, content_terms, facts_of
from rag.grounding import facts_outside_citations
from rag.schema import SentenceCheck

# The wording with the best separation on the labelled pairs (bench/verifier.py --pairs: AUC 0.938
# on 165 pairs; wordings that also show the question scored 0.87-0.93).
JUDGE_QUESTION = (
    "Statement: {sentence}\nIs the statement true according to passage [1], word for word in meaning, "
    "with nothing added? Reply yes or no."
)

Judge = Callable[[list[ChatMessage]], float]

LEXICAL_NOTE = "lexical: quotes share the sentence's words and names"


def support_messages(
    system_prompt: str, question: str, quotes: Sequence[str], sentence: str, template: str = JUDGE_QUESTION
) -> list[ChatMessage]:
    """The quote(s) as passage [1], then the question and the sentence to judge."""
    passage = " ".join(" ".join(q.split()) for q in quotes)
    user = f"Passages:\n[1] {passage}\n\n{template.format(question=question, sentence=' '.join(sentence.split()))}"
    return [ChatMessage(role=MessageRole.SYSTEM, content=system_prompt), ChatMessage(role=MessageRole.USER, content=user)]


def support_score(judge: Judge, system_prompt: str, question: str, quotes: Sequence[str], sentence: str) -> float:
    """P(yes) that the quotes state the sentence's claim, times the share of its words they or the question hold."""
    claim = claim_of(sentence)
    return judge(support_messages(system_prompt, question, quotes, claim)) * word_coverage(claim, quotes, question)


def yes_share(top: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from a first token's top log-probabilities; None when neither is among them."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top.items():
        word = token.strip().lower()
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


class NoLogprobs(Exception):
    """The backend answered without token log-probabilities."""


@dataclass
class OpenAIJudge:
    """P(yes) from an OpenAI-style chat completion of one token with `top_logprobs`.

    OpenAI, vLLM and llama.cpp's server return them; a server that does not raises
    NoLogprobs, and the caller falls back to the lexical check for good.
    """

    llm: Any  # llama_index OpenAI / OpenAILike

    def __call__(self, messages: list[ChatMessage]) -> float:
        # The client directly: LlamaIndex's chat() overrides a per-call max_tokens with the LLM's own.
        client = self.llm._get_client()  # noqa: SLF001
        response = client.chat.completions.create(
            model=self.llm.model, messages=[{"role": m.role.value, "content": m.content} for m in messages],
            max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=10,
        )
        logprobs = response.choices[0].logprobs if response.choices else None
        first = logprobs.content[0] if logprobs and logprobs.content else None
        share = yes_share({t.token: t.logprob for t in first.top_logprobs or [first]}) if first else None
        if share is None:
            raise NoLogprobs("the backend returned no log-probabilities for yes/no")
        return share


def build_judge(llm: Any, check: str = "auto") -> tuple[Judge | None, str]:
    """The support judge for this LLM and a note naming the check answers will get.

    `check` is `answer.support_check`: "lexical" forces the lexical check."""
    from llama_index.llms.openai import OpenAI

    from rag.worker import LocalModel

    if check == "lexical":
        return None, f"{LEXICAL_NOTE} (answer.support_check = lexical)"
    if isinstance(llm, LocalModel):
        return llm.yes_probability, "entailment: the model's yes/no log-probabilities"
    if isinstance(llm, OpenAI):  # OpenAILike is a subclass
        return OpenAIJudge(llm), "entailment: the model's yes/no log-probabilities"
    return None, f"{LEXICAL_NOTE} (this backend gives no log-probabilities)"


def word_coverage(sentence: str, quotes: Sequence[str], question: str) -> float:
    """Share of the sentence's content words (stems, numbers) that its quotes or the question hold."""
    terms = content_terms(sentence)
    given = content_terms(" ".join(quotes)) | facts_of(question)
    return len(terms & given) / len(terms) if terms else 1.0


def check_sentences(
    sentences: Sequence[SentenceSupport], question: str, judge: Judge | None, threshold: float, system_prompt: str,
    min_coverage: float = 0.5, read: Callable[[PassageSentence], str] = lambda ps: ps.text,
) -> list[SentenceCheck]:
    """Each answer sentence's state. Cheap lexical filters first (no quote, or a name or number
    found in no passage: not supported, no model call); then the judge, or the lexical coverage
    when there is no judge. `read` gives the text the judge reads for a quote (its whole sentence)."""
    checks = []
    for item in sentences:
        quotes = list(dict.fromkeys(" ".join(read(ps).split()) for ps, _ in item.support))
        check = SentenceCheck(text=item.sentence, supported=False, citations=sorted({ps.passage.n for ps, _ in item.support}), quotes=quotes)
        if not item.support:
            check.reason = "no passage sentence matches it"
        elif item.verbatim:
            check.supported, check.support = True, 1.0
        elif item.unsupported_facts:
            check.reason = f"{', '.join(sorted(item.unsupported_facts))} found in no passage"
        elif judge is not None:
            check.support = round(support_score(judge, system_prompt, question, quotes, item.sentence), 3)
            check.supported = check.support >= threshold
            check.reason = None if check.supported else f"the quotes do not state it (support {check.support:.2f})"
        elif outside := facts_outside_citations(item, question):
            check.reason = f"{', '.join(sorted(outside))} not in the passage it rests on"
        else:
            check.supported = item.coverage >= min_coverage
            check.reason = None if check.supported else f"its quotes hold only {item.coverage:.0%} of its words"
        checks.append(check)
    return checks


class SupportPair(BaseModel):
    """One hand-labelled (answer sentence, quote) pair: does the quote state the sentence?"""

    model_config = ConfigDict(extra="forbid")

    corpus: str = "seeds"
    case: str = ""
    question: str
    sentence: str
    quote: str
    supported: bool
    why: str = ""
    origin: str = ""


def load_pairs(path: Path) -> list[SupportPair]:
    from rag.errors import ConfigError

    try:
        rows = yaml.safe_load(path.read_text(encoding="utf-8"))
        return [SupportPair.model_validate(row) for row in rows]
    except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"Cannot read the labelled support pairs {path}: {exc}") from exc


def score_pairs(judge: Judge, pairs: Sequence[SupportPair], threshold: float, system_prompt: str) -> dict:
    """The support check's precision and recall of "supported" on labelled pairs, and the pairs it got wrong."""
    scores = [support_score(judge, system_prompt, p.question, [p.quote], p.sentence) for p in pairs]
    said_yes = [s >= threshold for s in scores]
    true_yes = sum(y and p.supported for y, p in zip(said_yes, pairs))
    positives = sum(p.supported for p in pairs)
    misjudged = [{**p.model_dump(), "support": round(s, 3)} for p, s, y in zip(pairs, scores, said_yes) if y != p.supported]
    return {
        "verifier_pairs": len(pairs),
        "verifier_precision": round(true_yes / sum(said_yes), 4) if any(said_yes) else None,
        "verifier_recall": round(true_yes / positives, 4) if positives else None,
        "verifier_misjudged": misjudged,
    }
