"""Feedback on answers: stored with everything needed to replay the case, and turned into test cases.

A 👍 or 👎 from the chat is worth something only if it can become a regression case, so each
record keeps the question, the chat history, the standalone question, the passages' chunk ids
with a hash of their text, the whole Answer (citations and support states), the backend, the
settings that shape answers (values and a hash) and the content hash of every document the
answer read. A record's case is stale once one of those documents has changed.

The records live in the app's database (rag.store: one SQLite file in the index folder, safe
for several writers). No library stores RAG feedback this way (kotaemon's and AnythingLLM's tables keep the rating
and the text, not what a replay needs), so the schema lives here.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Iterable, Sequence

from pydantic import BaseModel, Field

from rag.citations import fact_words, strip_markers
from rag.evaluate import Case, stale_sources
from rag.index import stored_source_hashes
from rag.kinds import Kind
from rag.schema import Answer, Turn
from rag.settings import Settings
from rag.store import connect, rows

# The settings groups whose values change what an answer says.
ANSWER_SHAPING = ("chunking", "retrieval", "answer", "llm", "embed")


class Problem(str, Enum):
    WRONG_ANSWER = "wrong answer"
    WRONG_SOURCE = "wrong or missing source"
    SHOULD_REFUSE = "should have refused"
    SHOULD_ANSWER = "should have answered"
    OTHER = "other"


class Feedback(BaseModel):
    """What the user said about an answer."""

    rating: int = Field(ge=-1, le=1, description="1: 👍, -1: 👎.")
    problem: Problem | None = None
    correction: str = Field("", max_length=5000, description="The correct answer, in the user's words.")
    comment: str = Field("", max_length=5000)
    sources: list[str] = Field(default_factory=list, description="The documents the user marked as the right ones.")


class Record(BaseModel):
    """One stored piece of feedback with the case it came from."""

    id: int | None = None
    created_at: str
    conversation_id: str = ""
    feedback: Feedback
    question: str
    history: list[Turn] = Field(default_factory=list)
    answer: Answer
    chunks: list[dict[str, str]] = Field(description="The passages' chunk ids, sources and text hashes.")
    source_hashes: dict[str, str] = Field(description="Content hash of each document the answer read, at the time.")
    settings: dict = Field(description="The values of the answer-shaping settings.")
    settings_hash: str
    corpus_fingerprint: str


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def corpus_fingerprint(source_hashes: dict[str, str]) -> str:
    """One hash of every indexed document's content hash: equal fingerprints, equal corpora."""
    return text_hash(json.dumps(sorted(source_hashes.items())))


def record_of(answer: Answer, feedback: Feedback, history: Sequence[Turn], settings: Settings,
              source_hashes: dict[str, str], conversation_id: str = "") -> Record:
    """A record of `feedback` on `answer`; `source_hashes` are the index's current document hashes."""
    shaping = settings.model_dump(mode="json", include=set(ANSWER_SHAPING))
    read = {p.source for p in answer.passages} | set(feedback.sources)
    return Record(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        conversation_id=conversation_id,
        feedback=feedback,
        question=answer.question,
        history=list(history),
        answer=answer,
        chunks=[{"node_id": p.node_id, "source": p.source, "text_hash": text_hash(p.text)} for p in answer.passages],
        source_hashes={s: source_hashes[s] for s in sorted(read) if s in source_hashes},
        settings=shaping,
        settings_hash=text_hash(json.dumps(shaping, sort_keys=True)),
        corpus_fingerprint=corpus_fingerprint(source_hashes),
    )


class FeedbackStore:
    """The feedback records of one index, in its database (rag.store)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, record: Record) -> int:
        """Store a record (in one transaction); returns its id."""
        with closing(connect(self.folder)) as db:
            cursor = db.execute("INSERT INTO feedback (created_at, rating, conversation_id, record) VALUES (?, ?, ?, ?)",
                                (record.created_at, record.feedback.rating, record.conversation_id,
                                 record.model_dump_json(exclude={"id"})))
            return int(cursor.lastrowid)

    def records(self) -> list[Record]:
        found = rows(self.folder, "SELECT id, record FROM feedback ORDER BY id")
        return [Record.model_validate_json(text).model_copy(update={"id": row_id}) for row_id, text in found]


class Export(BaseModel):
    cases: list[Case]
    skipped: dict[int, str] = Field(default_factory=dict, description="record id -> why it makes no case")


def case_of(record: Record) -> Case | str:
    """The test case a record makes, or why it makes none.

    👍 on an answer: that answer (its names and numbers as keywords, its cited documents as
    sources) must come back; 👍 on a refusal: the question must stay refused. 👎 "should have
    refused": it must be refused. Any other 👎 needs the user's correct answer.
    """
    fb, answer = record.feedback, record.answer
    cited = list(dict.fromkeys(c.source for c in answer.citations))
    base = {"id": f"feedback-{record.id}", "question": record.question, "history": record.history,
            "kind": Kind(answer.kind), "expected_sources": fb.sources, "source_hashes": record.source_hashes}
    if fb.rating > 0 and answer.refused or fb.problem is Problem.SHOULD_REFUSE:
        return Case(**base, answerable=False, reference_answer=fb.correction or "The documents do not hold the answer.")
    if fb.rating > 0:
        text = strip_markers(answer.answer)[0]
        return Case(**{**base, "expected_sources": fb.sources or cited}, reference_answer=text, expected_keywords=_keywords(text, record.question))
    if not fb.correction.strip():
        return "a 👎 without the correct answer: nothing to test against"
    return Case(**base, reference_answer=fb.correction, expected_keywords=_keywords(fb.correction, record.question))


def _keywords(answer: str, question: str) -> list[str]:
    """The answer's names and numbers that the question does not already hold: what a right answer must say."""
    asked = {w.lower() for w in fact_words(question)}
    return [w for w in fact_words(answer) if w.lower() not in asked][:4]


def export_cases(records: Iterable[Record]) -> Export:
    """Test cases from records, and the records that make none, with the reason."""
    out = Export(cases=[])
    for record in records:
        made = case_of(record)
        if isinstance(made, str):
            out.skipped[record.id or 0] = made
        else:
            out.cases.append(made)
    return out


def give(settings: Settings, answer: Answer, feedback: Feedback, history: Sequence[Turn] = (), conversation_id: str = "",
         source_hashes: dict[str, str] | None = None) -> int:
    """Store feedback on an answer (the doors' one call); returns the record's id."""
    current = stored_source_hashes(settings) if source_hashes is None else source_hashes
    return FeedbackStore(settings.chroma.path).add(record_of(answer, feedback, history, settings, current, conversation_id))


def notes_of(record: Record, current: dict[str, str]) -> list[str]:
    """What a reader of the record needs to know: the problem named, a stale document, why it makes no case."""
    made = case_of(record)
    stale = stale_sources(record.source_hashes, current)
    notes = [record.feedback.problem.value] if record.feedback.problem else []
    notes += [f"stale: {', '.join(stale)} changed"] if stale else []
    return notes + ([f"no case: {made}"] if isinstance(made, str) else [])


def _rating(record: Record) -> str:
    return "👍" if record.feedback.rating > 0 else "👎"


def describe(record: Record, current: dict[str, str]) -> str:
    """One line per record, as `rag feedback list` prints it."""
    notes = notes_of(record, current)
    question = " ".join(record.question.split())
    return f"#{record.id} {record.created_at} {_rating(record)} {question[:80]}" + (f" ({'; '.join(notes)})" if notes else "")


def table(records: Sequence[Record], current: dict[str, str]) -> list[dict[str, str | int]]:
    """The records as rows, as the app's Evaluation page shows them (newest first)."""
    return [{"#": r.id or 0, "when": r.created_at, "rating": _rating(r), "question": r.question,
             "correction": r.feedback.correction, "notes": "; ".join(notes_of(r, current))} for r in reversed(records)]


EXPORT_HEADER = "# Written by `rag feedback export` from the feedback store; run it with `rag eval --testset <this file>`.\n"


def write_cases(path: Path, cases: Sequence[Case]) -> None:
    """The cases as a YAML test set. A file not written by this export is never overwritten."""
    from rag.errors import ConfigError

    if path.exists() and not path.read_text(encoding="utf-8", errors="replace").startswith(EXPORT_HEADER):
        raise ConfigError(f"{path} exists and was not written by `rag feedback export`: choose another file (nothing was written).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(cases_yaml(cases), encoding="utf-8")
    tmp.replace(path)


def cases_yaml(cases: Sequence[Case]) -> str:
    """The cases as the text of a YAML test set (what the export writes and the app downloads)."""
    import yaml

    rows = [c.model_dump(mode="json", exclude_defaults=True) for c in cases]
    return EXPORT_HEADER + yaml.safe_dump(rows, sort_keys=False, allow_unicode=True)
