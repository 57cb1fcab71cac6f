"""What kind of answer a question asks for, and which documents it names.

People ask for one fact ("which court…"), and just as often for a summary, an overview, a
comparison, how-to steps or an explanation. Each kind needs other context (a whole document,
passages from each compared side, the text around a step) and another form of answer, so the
kind is decided first, from the wording alone: it costs no model call, and a lookup keeps its
fast path. No library classifies questions this way (LlamaIndex's routers ask the LLM, which
would add a prompt to every question), so the rules live here; their accuracy is measured on
eval/question_kinds.yaml by tests/test_kinds.py and `rag eval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Mapping

from rag.citations import content_terms


class Kind(str, Enum):
    LOOKUP = "lookup"
    SUMMARY = "summary"
    OVERVIEW = "overview"
    COMPARISON = "comparison"
    HOWTO = "howto"
    EXPLANATION = "explanation"

    @property
    def broad(self) -> bool:
        return self is not Kind.LOOKUP


# Checked in this order: "summarize how the two articles differ" compares, "explain how to…" is a how-to.
_RULES: list[tuple[Kind, re.Pattern[str]]] = [
    (Kind.COMPARISON, re.compile(
        r"\b(differ(?:s|ence|ences|ently)?|different (?:from|between)|compare[sd]?|comparing|comparison|contrast(?:s|ed)?|versus|vs\.?"
        r"|similarit(?:y|ies)|in common|distinguish(?:es)?)\b", re.I)),
    (Kind.SUMMARY, re.compile(
        r"\b(summar(?:y|ies|i[sz]e[sd]?|i[sz]ing)|sum up|tl;?dr|recap|gist|main (?:points?|ideas?|takeaways?|facts)"
        r"|key (?:points?|takeaways?|facts|messages?)|bullet points?|in a nutshell|highlights)\b", re.I)),
    (Kind.HOWTO, re.compile(
        r"(?:^|[.!?:]\s+)(?:(?:so|and|but|ok(?:ay)?),?\s+)?how\s+(?:do|can|could|should|would|shall)\s+(?:i|you|we|one)\b"
        r"|\bhow to\b|\bsteps? (?:to|for)\b|\bstep[- ]by[- ]step\b|\bwalk me through\b|\binstructions (?:for|to)\b"
        r"|\bwhat (?:do|should) i (?:do|run|type) to\b", re.I)),
    (Kind.OVERVIEW, re.compile(
        r"\b(overview|outline)\b|\bwhat (?:topics|subjects|sections|things) (?:does|do|is|are)\b"
        r"|\bwhat (?:is|are) (?:the |this |that |these |those )?(?:article|document|page|text|file|report|story)s?\b(?:.{0,80}\s)?about\s*[?.!]*$"
        r"|\bwhat does (?:the |this |that )?(?:article|document|page|text|file|report|story)\b.{0,40}\b(?:cover|discuss|describe)\b"
        r"|\bwhat (?:is|are) (?:covered|discussed)\b|\bwhich topics\b", re.I)),
    (Kind.EXPLANATION, re.compile(
        r"^\s*(?:please\s+|can you\s+|could you\s+)?(?:explain|describe|elaborate|tell me about|walk me through)\b"
        r"|\b(?:the )?background (?:of|to|on)\b|\bin (?:more )?detail\b"
        r"|^\s*how does\b.{0,60}\bwork\b", re.I)),
]

# Words that ask for the form of an answer, not name its subject: never a missing fact, never a search term.
REQUEST_WORDS = frozenset(
    "summarize summarise summarized summarised summarizing summary summaries sum recap gist tldr overview outline "
    "explain explained explanation describe described elaborate detail details background compare compared comparing "
    "comparison contrast difference differences differ differs different similarities similarity versus vs "
    "point points bullet bullets takeaway takeaways highlights nutshell step steps instructions walk tell list "
    "topics topic cover covers covered discuss discusses discussed say says said three four five two several short brief "
    "briefly section sections chapter chapters paragraph paragraphs mean means meaning documentation docs".split()
)

# A question about one part of a document: "the Western engagement section" (rag.outline.named_section).
SECTION_WORDS = re.compile(r"\b(?:section|part|chapter|heading)s?\b", re.I)

# "the two articles", "all the documents", "each page": the whole corpus, not one document.
_ALL_DOCS = re.compile(
    r"\b(?:(?:the|these|those|both|all|each|every)\s+(?:(?:two|three|four|five|\d+|of the|seed)\s+)*"
    r"(?:articles|documents|pages|texts|files|reports|stories|sources)|both (?:articles|documents)"
    r"|(?:each|every) (?:article|document|page|text|file|report|story|source)|the (?:whole )?(?:corpus|collection))\b", re.I)

# "the first article", "the last page": a document by its place in the list of documents (by file name, as listed).
_ORDINAL = re.compile(r"\bthe (first|second|third|fourth|fifth|last) (?:article|document|page|text|file|report|story)\b", re.I)
_PLACES = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "last": -1}


_FORM_PHRASE = re.compile(
    r"\b(?:main|key|important)\s+(?:points?|ideas?|takeaways?|facts|messages?)\b|\bsum up\b|\btl;?dr\b"
    r"|\b(?:the|this|that|these|those|each|both|all|every|two|first|second|one of the)\s+(?:seed\s+)?"
    r"(?:article|document|page|text|file|report|story|source)s?\b", re.I)
_FILLER = frozenset(
    "what which how the a an of in me please give can you could would about and do does i is are between this that these "
    "those it its to with on for from".split()
)


@dataclass(frozen=True)
class Intent:
    kind: Kind
    documents: tuple[str, ...] = ()  # sources the question names by title or file name
    whole_corpus: bool = False  # "the two articles", "all documents"
    topic: str = ""  # the question without its request words: what to search for


def kind_of(question: str) -> Kind:
    for kind, pattern in _RULES:
        if pattern.search(question):
            return kind
    return Kind.LOOKUP


def named_documents(question: str, titles: Mapping[str, str], openings: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Sources whose file name (with or without extension) or whole title the question contains,
    that "the first article" / "the last page" points to in the documents listed by file name, or
    that the name beside a word for a document points to (`by_byline`)."""
    text = " ".join(question.lower().split())
    listed = sorted(titles)
    places = [_PLACES[m[1].lower()] for m in _ORDINAL.finditer(question)]
    named = [listed[p] for p in places if p < len(listed) and listed]
    for source, title in titles.items():
        stem = PurePath(source).stem.lower()
        title_text = " ".join(title.lower().split())
        if source.lower() in text or (re.search(rf"(?<!\w){re.escape(stem)}(?!\w)", text) and _names_alone(stem)) \
                or (len(title_text) >= 8 and title_text in text and _names_the_page(question, title)):
            named.append(source)
    return tuple(dict.fromkeys(named + by_byline(question, openings or {})))


def by_byline(question: str, openings: Mapping[str, str]) -> list[str]:
    """The one source whose opening holds the name a question gives its document by: "Summarize the
    AFP article" names the article that opens "By AFP", a name its title does not hold. A publisher,
    an author or an agency is written at the top of what it wrote; a name several openings hold
    ("the SQLite page") names no one document, and none is taken."""
    found = []
    for written in byline_names(question):
        name = re.compile(rf"(?<!\w){re.escape(written)}(?!\w)")
        holders = [source for source, text in openings.items() if name.search(text)]
        found += holders if len(holders) == 1 else []
    return found


def byline_names(question: str) -> list[str]:
    """The capitalised names a question gives beside a word for a document ("AFP" in "the AFP article")."""
    return [(m["before"] or m["after"]).rstrip(".'-") for m in _BYLINE.finditer(question)]  # "the article by AFP." ends a sentence


DOCUMENT_WORDS = "page article document documentation doc file report story text"
_DOCUMENT_WORD = rf"(?:{'|'.join(DOCUMENT_WORDS.split())})s?"

# A name written with capitals just before or after a word for a document: "the AFP article", "the report by Ana Ruiz".
_CAPITALISED = r"[A-Z][\w&.'-]*(?:\s+[A-Z][\w&.'-]*)*"
_BYLINE = re.compile(rf"\b(?:[Tt]he|[Aa]n?)\s+(?P<before>{_CAPITALISED})(?:'s?)?\s+{_DOCUMENT_WORD}\b"
                     rf"|\b{_DOCUMENT_WORD}\s+(?:by|from)\s+(?P<after>{_CAPITALISED})")


def _names_the_page(question: str, title: str) -> bool:
    """Whether a title the question holds names its document: a title of four words or more, one
    written with its capitals, or one beside a word for a document ("the page about in-memory
    databases", "the Vulnerabilities page"). A short title is also a subject: "how SQLite handles
    transactions" named the page "Transaction", "STRICT tables and ordinary tables" the page
    "STRICT Tables"."""
    words = title.split()
    if len(words) >= 4 or " ".join(words) in " ".join(question.split()):
        return True
    at = re.escape(" ".join(words)).replace(r"\ ", r"\s+")
    beside = rf"\b{_DOCUMENT_WORD}\W+(?:\w+\W+){{0,2}}?{at}|{at}\W+{_DOCUMENT_WORD}\b"
    return bool(re.search(beside, question, re.I))


def _names_alone(stem: str) -> bool:
    """Whether a file name without its extension names the file: not a word a question uses anyway
    ("Summarize the page about in-memory databases" named about.html, and read it first)."""
    return len(stem) >= 4 and stem not in REQUEST_WORDS and bool(content_terms(stem))


def without_filler(text: str) -> str:
    """The text's words without question words and particles (request words stay)."""
    return " ".join(w for w in re.findall(r"\w[\w'’.-]*\w|\w", text) if w.lower() not in _FILLER)


def topic_of(question: str) -> str:
    """The question without request words and question words: the subject to retrieve for."""
    question = _FORM_PHRASE.sub(" ", question)
    words = re.findall(r"\w[\w'’.-]*\w|\w", question)
    return " ".join(w for w in words if w.lower() not in REQUEST_WORDS and w.lower() not in _FILLER)


def classify(question: str, titles: Mapping[str, str] | None = None, openings: Mapping[str, str] | None = None) -> Intent:
    """The question's kind, the documents it names (by file name, title or byline) and the topic to search for."""
    kind = kind_of(question)
    titles = titles or {}
    documents = named_documents(question, titles, openings)
    subject = question
    for source in documents:  # the name says which document, not what to find in it
        for name in sorted({source, PurePath(source).stem, titles[source]}, key=len, reverse=True):
            subject = re.sub(re.escape(name), " ", subject, flags=re.I)
    for name in byline_names(question) if documents else []:
        subject = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", " ", subject)
    return Intent(kind=kind, documents=documents, whole_corpus=bool(_ALL_DOCS.search(question)) and not documents,
                  topic=topic_of(subject) if kind.broad else question)
