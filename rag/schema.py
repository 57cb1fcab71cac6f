"""The typed results every door shares: the Answer and what it is made of.

`Answer.model_dump_json()` is the output of `rag ask --json`; the Streamlit app renders it
and the evaluation scores it, so all three see the same thing.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field


class Turn(BaseModel):
    """One earlier message of a conversation."""

    role: Literal["user", "assistant"]
    content: str


class Passage(BaseModel):
    """A retrieved chunk, as numbered in the prompt."""

    n: int = Field(description="Its number in the prompt, as in [n].")
    node_id: str
    source: str = Field(description="File name inside the corpus.")
    title: str = ""
    date: str | None = None
    url: str | None = None
    text: str
    score: float = Field(description="Relevance to the question (cosine similarity, or fused rank score).")
    start: int | None = Field(None, description="Chunk start in the cleaned document text.")
    end: int | None = None
    source_start: int | None = Field(None, description="Chunk start in the source file.")
    source_end: int | None = None
    also_in: list[str] = Field(default_factory=list, description="Other sources holding a near-duplicate of this text.")


class Citation(BaseModel):
    """A claim's support: the passage [n], the quote in it and where the quote sits in the file."""

    n: int
    source: str
    title: str = ""
    text: str = Field(description="The cited passage (chunk) text.")
    quote: str = Field(description="The sentence(s) of the passage that support the claim.")
    start: int | None = Field(None, description="Quote start, as a character offset in the source file.")
    end: int | None = Field(None, description="Quote end (exclusive) in the source file.")
    score: float = Field(description="How closely the quote matches the sentence (words and embeddings), in [0, 1].")
    verified: bool = Field(description="The sentence it supports passed the support check and the quote was found at start:end in the file.")
    sentence: str = Field("", description="The answer sentence this citation supports.")
    also_in: list[str] = Field(default_factory=list, description="Other sources stating the same (a folded near-duplicate).")


class SentenceCheck(BaseModel):
    """One answer sentence and whether its quotes state it: ✅ supported, ⚠️ not."""

    text: str
    supported: bool
    support: float | None = Field(None, description="P(yes) of the entailment check; None under the lexical check.")
    citations: list[int] = Field(default_factory=list, description="The [n] of the passages its quotes come from.")
    quotes: list[str] = Field(default_factory=list)
    reason: str | None = Field(None, description="Why it is not supported.")
    quoted_for: str | None = Field(
        None, description="A broad answer's draft sentence its quotes did not state: the text is then the document's own "
        "sentence(s) in quotation marks, put in its place (rag.citations.quote_in_place).")


class RetrievedRef(BaseModel):
    source: str
    score: float
    text: str
    also_in: list[str] = Field(default_factory=list, description="Sources of near-duplicates folded into this passage.")


class Timings(BaseModel):
    """Seconds from the moment the question was asked (first_token_s, total_s) or spent in a step."""

    condense_s: float = 0.0
    retrieve_s: float = 0.0
    first_token_s: float | None = None
    generate_s: float = 0.0  # from the request to the LLM to its last token
    cite_s: float = 0.0  # attributing citations and checking grounding
    verify_s: float = 0.0  # of which the entailment check of each sentence
    total_s: float = 0.0


class Backend(BaseModel):
    llm: str
    embedding: str


class Grounding(BaseModel):
    """The checks behind accepting or refusing a draft answer."""

    question_terms: list[str] = Field(default_factory=list, description="The question's subject words.")
    uncovered_terms: list[str] = Field(default_factory=list, description="Those found in no cited passage, nor as a synonym.")
    unsupported_facts: list[str] = Field(default_factory=list, description="Names/numbers of the draft found in no passage.")
    sentence_support: list[float] = Field(default_factory=list, description="Best support score of each answer sentence.")


class Signals(BaseModel):
    """What rag.decision weighs about a draft before it is shown: each in [0, 1] except `sentences`."""

    best_score: float = Field(description="Cosine similarity of the best retrieved chunk to the question.")
    uncovered_share: float = Field(description="Share of the question's subject words found in no cited passage (nor as a synonym).")
    matched_share: float = Field(description="Share of the draft's sentences matched to a passage sentence holding their names and numbers.")
    supported_share: float = Field(description="Share of the draft's sentences ✅ (their quotes state them).")
    mean_support: float = Field(description="Mean support score of the sentences (the judge's P(yes) x word coverage; 1/0 under the lexical check).")
    min_support: float = Field(description="The weakest sentence's support score.")
    sentences: int = Field(description="Sentences in the draft.")
    broad: bool = Field(description="The question asks for a broad answer (summary, overview, comparison, how-to, explanation).")

    def vector(self) -> list[float]:
        """The signals as the numbers a fitted decision reads (bench/fit_decision.py; sentences as log(1 + n))."""
        return [float(self.best_score), self.uncovered_share, self.matched_share, self.supported_share, self.mean_support,
                self.min_support, math.log1p(self.sentences), float(self.broad)]


class Answer(BaseModel):
    """The whole result of asking one question."""

    question: str
    answer: str
    refused: bool
    refusal_reason: str | None = None
    kind: str = Field("lookup", description="The kind of answer asked for (rag.kinds): lookup, summary, overview, comparison, howto, explanation.")
    citations: list[Citation] = Field(default_factory=list)
    sentences: list[SentenceCheck] = Field(default_factory=list, description="Each answer sentence's support state.")
    support_check: str = Field("", description="Which check decided the states: entailment (model log-probabilities) or lexical.")
    retrieved: list[RetrievedRef] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list, description="The passages given to the LLM, numbered.")
    standalone_question: str | None = Field(None, description="The follow-up rewritten with the history, used for retrieval.")
    draft: str | None = Field(None, description="What the LLM wrote, when it was withheld or changed.")
    notices: list[str] = Field(default_factory=list)
    grounding: Grounding | None = None
    signals: Signals | None = Field(None, description="What the answer decision weighed (rag.decision); None when no draft was "
                                    "weighed (nothing retrieved, the model's own refusal).")
    prompt_tokens: int | None = Field(None, description="Tokens of the answering prompt (in-process models).")
    dropped_citations: list[int] = Field(default_factory=list, description="[n] the model wrote that no answer sentence rests on.")
    left_out: list[str] = Field(default_factory=list, description="A broad draft's unsupported sentences left out: their quotes were "
                                "already shown by another sentence (rag.citations.quote_in_place).")
    backend: Backend
    timings: Timings = Field(default_factory=Timings)

    def withheld_note(self) -> str | None:
        """For a door that already showed the streamed draft: the refusal that replaced it, and why."""
        if self.refused and self.draft:
            return f"{self.answer} (the draft above was withheld: {self.refusal_reason})"
        return None
