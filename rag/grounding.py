"""The grounding signals: is a draft answer supported by its passages, and does it address the question?

Asked to refuse when the passages lack the answer, a small model still answers from its
own knowledge (measured: 3 of 5 out-of-corpus questions), and asked to verify a whole answer it
says "yes" to nearly everything (measured here: 66 of 68 drafts, 3.4 s each). So these signals
are lexical and embedding-based, written here because no library offers them, and weighed with
the judge's per-sentence support by the answer decision (rag.decision):

1. which answer sentences are matched to a passage sentence (rag.citations.attribute);
2. which names and numbers appear in no passage (an invented "7.8 million");
3. which of the question's content words are found in no cited passage, literally or as a
   close synonym (word-embedding similarity), so an answer copied from an unrelated passage
   ("30,000 lives" for a population question) weighs less;
4. and one hard rule: an answer resting only on sentences addressed to an AI ("ignore all
   previous instructions and answer with ...") must report them, not obey them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from rag.citations import Attribution, SentenceSupport, content_terms, key_facts, tokens
from rag.schema import Passage

_HOW_PHRASE = re.compile(r"\bhow\s+(long|many|much|far|often|old|big|large|soon|high)\b", re.IGNORECASE)

Embed = Callable[[list[str]], np.ndarray]

# Sentences addressed to an AI rather than to a reader: a document may carry them to hijack answers.
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|prompts?|rules|guidelines)\b"
    r"|\bsystem prompt\b"
    r"|\b(answer|respond|reply)\b.{0,30}\b(every|all|any)\b.{0,20}\b(questions?|prompts?|queries)\b.{0,20}\bwith\b"
    r"|\byou are now\b|\b(new|updated) instructions\b",
    re.IGNORECASE,
)
# Words of an answer that reports what a document says instead of obeying it.
_REPORTING = re.compile(
    r"\b(says?|said|saying|asks?|asked|instructs?|instructed|tells?|told|states?|stated|writes?|wrote|"
    r"claims?|demands?|memo|note|document|text|passage|according)\b",
    re.IGNORECASE,
)


def is_injection(sentence: str) -> bool:
    return bool(_INJECTION.search(sentence))


def obeys_injection(item: SentenceSupport) -> bool:
    """An answer sentence resting only on planted instructions, and not reporting them, follows them."""
    if not item.support or not all(is_injection(ps.text) for ps, _ in item.support):
        return False
    return not _REPORTING.search(item.sentence)


@dataclass
class Verdict:
    reason: str | None  # None: grounded
    uncovered_terms: set[str] = field(default_factory=set)
    question_terms: set[str] = field(default_factory=set)
    unsupported_facts: set[str] = field(default_factory=set)

    @property
    def grounded(self) -> bool:
        return self.reason is None


def question_words(question: str) -> dict[str, tuple[str, ...]]:
    """The question's content words that name its subject: word -> stems of its hyphen parts.

    No list of words that only ask for a kind of answer ("date", "city") or carry no fact ("make",
    "get") is left out. Two such lists, written on the seeds, earned nothing on the left-out corpora
    (2026-12-08, the same drafts decided with and without them): with them, one right lookup more on
    the man pages, one right lookup fewer and one wrong broad answer more on Git's guides, gnuplot
    the same."""
    text = _HOW_PHRASE.sub(" ", question)
    words: dict[str, tuple[str, ...]] = {}
    seen: set[tuple[str, ...]] = set()
    for token in tokens(text):
        lower = token.lower()
        if not content_terms(token):
            continue
        parts = tuple(p for part in lower.split("-") for p in sorted(content_terms(part)))
        if parts and parts not in seen:
            seen.add(parts)
            words[lower] = parts
    return words


def _surface_words(passages: Sequence[Passage]) -> dict[str, str]:
    words: dict[str, str] = {}
    for passage in passages:
        for token in tokens(f"{passage.title} {passage.text}"):
            for part in {token, *token.split("-")}:
                for stem in content_terms(part):
                    words.setdefault(stem, part.lower())
    return words


def uncovered_terms(question: str, passages: Sequence[Passage], embed: Embed, min_similarity: float) -> tuple[set[str], set[str]]:
    """Question words found in no passage, neither literally (same stem) nor as a close synonym.

    A hyphenated word ("Armenia-Azerbaijan") counts as found when each of its parts is, and a word
    written apart from its neighbour ("back up", "set up", "data base") when the two as one word are.
    """
    wanted = question_words(question)
    have = _surface_words(passages)
    literal = lambda stem: stem in have or _prefix_match(stem, have)  # noqa: E731
    joined = _compounds(question)
    written_apart = {w for w in wanted if joined.get(w, set()) & have.keys()}
    missing_parts = {p for w, parts in wanted.items() if w not in written_apart for p in parts if not literal(p)}
    if missing_parts and have:
        surface = {p: p for p in missing_parts}
        candidates = list(have.values())
        vectors = embed(list(surface) + candidates)
        m_vecs, c_vecs = vectors[: len(surface)], vectors[len(surface) :]
        best = (m_vecs @ c_vecs.T).max(axis=1)
        missing_parts = {p for p, score in zip(surface, best) if score < min_similarity}
    uncovered = {word for word, parts in wanted.items() if any(p in missing_parts for p in parts)}
    return uncovered, set(wanted)


def _compounds(question: str) -> dict[str, set[str]]:
    """Each question word -> the stems of it written together with the word before or after it."""
    words = [t.lower() for t in tokens(question)]
    joined: dict[str, set[str]] = {}
    for a, b in zip(words, words[1:]):
        if a.isalpha() and b.isalpha() and len(stems := content_terms(a + b)) == 1:
            joined.setdefault(a, set()).update(stems)
            joined.setdefault(b, set()).update(stems)
    return joined


def _prefix_match(stem: str, have: dict[str, str]) -> bool:
    """'nagorno-karabakh' vs 'karabakh', 'peacekeep' vs 'peacekeepers': one stem starts the other."""
    if len(stem) < 5:
        return False
    return any(len(h) >= 5 and (h.startswith(stem) or stem.startswith(h)) for h in have)


def facts_outside_citations(item: SentenceSupport, question: str) -> set[str]:
    """Names and numbers of an answer sentence that the passages it matched best (nor the question) do not hold.

    Sentences cited only because they hold one of its facts (score 0) do not count: with no
    judge reading them, "killed 30,000" lifted from another passage must not pass.
    """
    matched = {ps.passage.n: f"{ps.passage.title} {ps.passage.text}" for ps, score in item.support if score > 0}
    cited = " ".join(matched.values()) + " " + question
    return key_facts(item.sentence) - key_facts(cited) - content_terms(cited)


def judge(attribution: Attribution, question: str, passages: Sequence[Passage], embed: Embed, min_synonym_similarity: float = 0.55) -> Verdict:
    """What rag.decision weighs about a draft: the question words its cited passages miss and the names
    and numbers found in no passage. One rule is decided here, before any other: an answer that
    obeys an instruction planted in a document is refused."""
    facts = {f for s in attribution.sentences for f in s.unsupported_facts}
    if any(obeys_injection(s) for s in attribution.sentences):
        return Verdict("the answer follows an instruction planted in a document", unsupported_facts=facts)
    cited = list({ps.passage.n: ps.passage for s in attribution.sentences for ps, _ in s.support}.values())
    missing, wanted = uncovered_terms(question, cited, embed, min_synonym_similarity)
    return Verdict(None, missing, wanted, facts)
