"""Citations and grounding: which passage sentence supports each answer sentence, and is it true?

Small local models rarely write [n] markers (measured: 2 of 32 answers) and answer from
their own knowledge when the passages lack the answer (3 of 5), so markers are attributed
after generation and every answer is checked against the passages here. No library does
this post-hoc attribution; the pieces it builds on (Punkt sentences, NLTK stopwords,
Snowball stems, the embedding model) are library parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.corpus import CleanText
from rag.schema import Citation, Passage, SentenceCheck

REFUSAL = "I couldn't find this in the documents."

_MARKER = re.compile(r"\s*\[(\d{1,3})(?:\s*,\s*\d{1,3})*\]")
_MARKER_NUMS = re.compile(r"\d{1,3}")
_TOKEN = re.compile(r"\d[\d,.]*\d|\d|[^\W\d_][\w'’-]*", re.UNICODE)
# "1." / "2)" / "-" / "•" opening a line: list numbering states no fact.
_LIST_MARKER = re.compile(r"^[ \t]*(?:\(?\d{1,2}[.)]|[-*•])(?:[ \t]+|$)", re.MULTILINE)
# Phrases of a reply that found no answer. The first always mean it; the second ("not
# mentioned", "does not include") also state facts, so they mean it only when the reply does not
# open with the yes or no a yes/no question asks for ("No, SQLite does not include a server.").
_REFUSAL_HINTS = re.compile(
    r"couldn'?t find|could not find|cannot find|can'?t find|no (?:information|mention)|"
    r"not (?:in|within) the (?:passages|documents|text)|unable to (?:find|answer|determine)|i don'?t know",
    re.IGNORECASE,
)
_FACT_OR_REFUSAL = re.compile(
    r"not (?:mentioned|stated|provided|specified|given|included)|(?:do|does) not (?:contain|mention|say|provide|specify|state|include)",
    re.IGNORECASE,
)
_SOURCES = re.compile(r"\b(?:passages?|documents?|texts?|context)\b", re.IGNORECASE)
ANSWER_WORD = re.compile(r"^\s*(?:yes|no)\b[,.;:!]*\s*", re.IGNORECASE)
# Words that carry no fact of their own in a question or answer, beyond NLTK's stopwords.
_GENERIC = frozenset(
    "according article articles document documents passage passages text report reports reported say says said "
    "tell told mention mentioned mentions state stated states describe described happen happened take took "
    "also would could one many much new like make made give given get got name named kind way thing things "
    "yes answer question find".split()
)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from llama_index.core.utils import globals_helper

    return frozenset(globals_helper.stopwords) | _GENERIC


@lru_cache(maxsize=1)
def _stemmer():  # noqa: ANN202
    import Stemmer

    return Stemmer.Stemmer("english")


def normalize_number(token: str) -> str:
    return token.replace(",", "").rstrip(".")


def tokens(text: str) -> list[str]:
    """Words and numbers of `text`, without the numbers of list items."""
    return _TOKEN.findall(_LIST_MARKER.sub("", text))


def content_terms(text: str) -> set[str]:
    """Stemmed content words and normalised numbers: what a sentence asserts."""
    stop = _stopwords()
    words = [t for t in tokens(text) if t.lower().replace("’", "'") not in stop]
    words += [part for t in words if "-" in t for part in t.split("-") if part and part.lower() not in stop]
    numbers = {normalize_number(t) for t in words if t[0].isdigit()}
    stems = set(_stemmer().stemWords([t.lower() for t in words if not t[0].isdigit()]))
    return stems | numbers


def key_facts(text: str) -> set[str]:
    """Numbers and proper names: the facts a model invents when it answers from memory."""
    return {normalize_number(w) if w[0].isdigit() else _stemmer().stemWord(w.lower()) for w in fact_words(text)}


# After a text's first word, these make it a verb, not a name: a step's "Run the .import command"
# had "run" as a fact, which no passage on importing stated, and cited "… you might run:" for it.
_DETERMINERS = frozenset("the a an this that these those your its their each every all any".split())


def fact_words(text: str) -> list[str]:
    """The numbers and proper names of `text` as written, in order, each once."""
    words = tokens(text)
    stop = _stopwords()
    found = [w for i, w in enumerate(words)
             if w[0].isdigit() or (w[0].isupper() and w.lower() not in stop and (i > 0 or _names(w, words)))]
    return list(dict.fromkeys(found))


def _names(first: str, words: list[str]) -> bool:
    """Whether a text's capitalized first word may be a name: not one letter, nor a verb before a determiner."""
    return len(first) > 1 and not (len(words) > 1 and words[1].lower() in _DETERMINERS)


@lru_cache(maxsize=1)
def _punkt():  # noqa: ANN202 - nltk's PunktTokenizer
    """NLTK's Punkt trained on English, from the data LlamaIndex ships (no download).

    LlamaIndex's own `globals_helper.punkt_tokenizer` is untrained: it knows no abbreviation, so
    "At the meeting, Mr. Pashinyan and Mr. Aliyev expressed…" was three sentences, and "At the
    meeting, Mr." was shown as a quote."""
    from llama_index.core.utils import globals_helper
    from nltk.tokenize import PunktTokenizer

    fallback = globals_helper.punkt_tokenizer  # also puts LlamaIndex's NLTK data on nltk's path
    try:
        return PunktTokenizer("english")
    except (LookupError, OSError):
        return fallback


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of `text`: lines first (chunks keep headlines and captions), then Punkt."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        for start, end in _punkt().span_tokenize(line.group(0)):
            s, e = line.start() + start, line.start() + end
            if text[s:e].strip():
                spans.append((s, e))
    return spans


# A bullet or a step number, as the model starts a list item
ITEM_MARKER = r"(?:[-*•]|\d{1,2}[.)])"
# A list item that held only markers ("5. [4]": the model cited before it wrote, and stopped)
_BARE_ITEM = re.compile(rf"^[ \t]*{ITEM_MARKER}[ \t]*(?:\n|$)", re.MULTILINE)


def strip_markers(text: str) -> tuple[str, list[int]]:
    """Remove [n] markers a model wrote, and the list items left empty; return the clean text and
    the numbers it cited."""
    cited = [int(n) for m in _MARKER.finditer(text) for n in _MARKER_NUMS.findall(m.group(0))]
    return _BARE_ITEM.sub("", _MARKER.sub("", text)).strip(), cited


_STEP = re.compile(r"^(?P<indent>[ \t]*)(?P<n>\d{1,2})(?P<dot>[.)])(?=[ \t])", re.MULTILINE)


def renumber_steps(text: str) -> str:
    """Numbered steps counted on from each list's first number, across lines between them (code).

    A step left out (rag.citations.quote_in_place) or left empty by its markers ("3. [4]") would
    leave "1. 2. 4." for the reader; a blank line ends a list (a comparison's parts are lists apart)."""
    out = []
    for block in re.split(r"(\n[ \t]*\n)", text):
        count: list[int] = []

        def number(m: re.Match) -> str:
            count.append(count[-1] + 1 if count else int(m["n"]))
            return f"{m['indent']}{count[-1]}{m['dot']}"
        out.append(_STEP.sub(number, block))
    return "".join(out)


def opens_with_refusal(text: str) -> bool:
    """A long answer (a summary, a comparison) that says in one later sentence that the passages do
    not mention some detail still answers: only its first sentence can make it a refusal."""
    spans = split_sentences(text)
    return is_refusal(text[spans[0][0]:spans[0][1]] if spans else text)


def is_refusal(text: str) -> bool:
    """The model itself said the passages lack the answer."""
    if not text.strip() or _REFUSAL_HINTS.search(text):
        return True
    answers_yes_no = ANSWER_WORD.match(text) and not _SOURCES.search(text)
    return bool(_FACT_OR_REFUSAL.search(text)) and not answers_yes_no


@dataclass
class PassageSentence:
    passage: Passage
    start: int  # in passage.text
    end: int

    @property
    def text(self) -> str:
        return self.passage.text[self.start : self.end].strip()


@dataclass
class SentenceSupport:
    """How one answer sentence is supported."""

    sentence: str
    span: tuple[int, int]
    support: list[tuple[PassageSentence, float]] = field(default_factory=list)
    unsupported_facts: set[str] = field(default_factory=set)
    coverage: float = 0.0  # share of the sentence's content terms found in the cited sentences
    verbatim: bool = False  # a line of code the passage holds as written: supported without a judge

    @property
    def supported(self) -> bool:
        return bool(self.support) and not self.unsupported_facts


@dataclass
class Attribution:
    sentences: list[SentenceSupport]


Embed = Callable[[list[str]], np.ndarray]


def passage_sentences(passages: Sequence[Passage]) -> list[PassageSentence]:
    """The sentences an answer may cite. Questions are left out: an FAQ's "Can I ship it without
    paying royalties?" shares every word of "You must pay royalties" yet states nothing."""
    return [PassageSentence(p, s, e) for p in passages for s, e in split_sentences(unwrap(p.text)) if not p.text[s:e].rstrip().endswith("?")]


# A line break inside a sentence, where the file wraps its lines: the line goes on with a lowercase
# word, or it stops at a word that cannot end a sentence ("which are the | SQLite table").
_WRAP = re.compile(r"(?P<last>\w+)?(?P<end>[^\w\n]*)\n(?=[ \t]*(?P<next>\S))")
_LIST_ITEM = re.compile(rf"[ \t]*{ITEM_MARKER}\s")
_NO_END = frozenset("the a an of and or to in on for with by from is are as that which".split())


def unwrap(text: str) -> str:
    """`text` with the line breaks that wrap a sentence made spaces, offsets unchanged.

    Passage sentences are split at lines first (a headline or a caption is a sentence of its own);
    an HTML page or a hard-wrapped text file also breaks its lines mid-sentence: "The ".import"
    command takes two arguments which are the" was a candidate quote, and a step that said where
    the arguments go matched nothing."""
    def space(m: re.Match) -> str:
        ended = m["end"].strip() != "" and m["end"].strip()[-1] in ".!?:;"
        wraps = not ended and (m["next"].islower() or (m["last"] or "") in _NO_END) and not _LIST_ITEM.match(text, m.end())
        return m.group(0)[:-1] + " " if wraps else m.group(0)
    return _WRAP.sub(space, text)


def attribute(
    answer: str,
    question: str,
    passages: Sequence[Passage],
    embed: Embed,
    min_support: float = 0.45,
) -> Attribution:
    """Match each answer sentence to the passage sentences that support it.

    Support mixes lexical coverage (share of the answer sentence's content terms found in
    the passage sentence) and embedding similarity; the best sentence, plus a second one
    when it adds missing terms, is cited. Names and numbers found in no passage (nor in the
    question, which the answer may repeat) are recorded as unsupported.
    """
    candidates = passage_sentences(passages)
    code = code_lines(answer)
    answer_spans = [(s, e) for s, e in split_sentences(answer)
                    if content_terms(answer[s:e]) and not is_lead_in(answer[s:e]) and not _FENCE.match(answer[s:e])]
    if not candidates or not answer_spans:
        return Attribution([])
    vectors = embed([claim_of(answer[s:e]) for s, e in answer_spans] + [c.text for c in candidates])
    a_vecs, c_vecs = vectors[: len(answer_spans)], vectors[len(answer_spans) :]
    c_terms = [content_terms(c.text) for c in candidates]
    all_text = " ".join(f"{p.title} {p.text}" for p in passages) + " " + question
    all_facts = key_facts(all_text) | content_terms(all_text)
    results = []
    for (s, e), a_vec in zip(answer_spans, a_vecs):
        if any(a <= s and e <= b for a, b in code) and (item := written_in(answer[s:e], (s, e), passages)):
            results.append(item)
            continue
        item = _support(answer[s:e], (s, e), a_vec, candidates, c_vecs, c_terms, all_facts, min_support)
        if item.support:
            _cite_fact_holders(item, candidates, facts_of(question))
        results.append(item)
    return Attribution(results)


# A line that opens or closes a fenced code block ("```sql"): markup, no claim to check.
_FENCE = re.compile(r"^[ \t]*```[\w+.-]*[ \t]*$")


def code_lines(answer: str) -> list[tuple[int, int]]:
    """The spans of the answer's fenced code blocks, between their fences."""
    fences = [m for m in re.finditer(r"[^\n]+", answer) if _FENCE.match(m.group(0))]
    return [(opening.end(), closing.start()) for opening, closing in zip(fences[::2], fences[1::2])]


def written_in(line: str, span: tuple[int, int], passages: Sequence[Passage]) -> SentenceSupport | None:
    """A line of the answer's code, supported where a passage holds it as written (spaces and case aside:
    "foreign_keys=on" is "foreign_keys = ON").

    Code is written as the documents write it, not stated: judged as a statement, a fenced
    "PRAGMA foreign_keys = ON;" is no claim the model can say yes or no to (it scored 0.38 against
    a sentence naming the pragma), while a page's "sqlite> PRAGMA foreign_keys = ON;" holds it
    exactly. A line no passage holds is matched and judged as any sentence is; its fences are no
    sentences at all (the "```sql" line was judged, at 0.50)."""
    chars = "".join(line.split())
    if not chars:
        return None
    pattern = re.compile(r"(?<!\w)" + r"\s*".join(map(re.escape, chars)) + r"(?!\w)", re.IGNORECASE)
    for passage in passages:
        if m := pattern.search(passage.text):
            return SentenceSupport(line.strip(), span, [(PassageSentence(passage, m.start(), m.end()), 1.0)], coverage=1.0, verbatim=True)
    return None


# "The article discusses…", "The second article mentions that…", "They discuss…" (an overview of
# "these documents"): a summary's way of saying what a document states. The quote states the rest,
# not that a document discusses it.
_DOCUMENT_SAYS = re.compile(
    r"^\s*(?:[-*•]\s*|\d{1,2}[.)]\s*)?(?:it|they|(?:the|this|that|these|those|both|each|all)\s+(?:[\w-]+\s+){0,3}?"
    r"(?:article|document|page|text|passage|report|story|section)s?)\s+(?:also\s+)?"
    r"(?:discuss|mention|highlight|describe|cover|state|report|say|note|explain|provide|focus(?:es)? on|talk(?:s)? about)\w*\s+"
    r"(?:information (?:about|on)\s+)?(?:that\s+|how\s+)?", re.IGNORECASE)


def claim_of(sentence: str) -> str:
    """The fact an answer sentence asserts, without the "Yes,"/"No," that answers a yes/no question,
    and without the "The article discusses" that a summary puts before a document's fact.

    Judged with it, the sentence reads to the model as a reply, not a statement: "No, clashes
    have continued while…" scored 0.27 against the quote that states it, 0.75 without the "No,".
    Matched with it, "The article highlights the efforts of Russia to mediate…" found no passage
    sentence: "highlights" is in none."""
    rest = _DOCUMENT_SAYS.sub("", ANSWER_WORD.sub("", sentence, count=1), count=1)
    return rest[:1].upper() + rest[1:] if rest.strip() else sentence


def is_lead_in(sentence: str) -> bool:
    """"The two articles differ in the following ways:" introduces the list below it and states no fact of its own."""
    return sentence.rstrip().endswith(":")


def facts_of(text: str) -> set[str]:
    """Names, numbers and content words of `text`: what a fact of an answer may be matched against."""
    return key_facts(text) | content_terms(text)


def _cite_fact_holders(item: SentenceSupport, candidates: list[PassageSentence], given: set[str]) -> None:
    """Also cite the retrieved sentences that hold the sentence's names and numbers its quotes lack.

    An answer may join facts from two passages ("... Russia, Azerbaijan and Armenia", the
    country from a neighbouring passage); citing where each fact stands lets the check read
    them all instead of refusing a correct answer. Facts the question supplies need no quote.
    """
    cited = {id(ps) for ps, _ in item.support}
    have = set().union(*(facts_of(ps.text) for ps, _ in item.support)) | given
    for fact in sorted(key_facts(item.sentence) - have):
        holder = next((c for c in candidates if id(c) not in cited and fact in facts_of(c.text)), None)
        if holder is not None and fact not in have:
            item.support.append((holder, 0.0))
            cited.add(id(holder))
            have |= facts_of(holder.text)


def _support(
    sentence: str,
    span: tuple[int, int],
    a_vec: np.ndarray,
    candidates: list[PassageSentence],
    c_vecs: np.ndarray,
    c_terms: list[set[str]],
    all_facts: set[str],
    min_support: float,
) -> SentenceSupport:
    terms = content_terms(claim_of(sentence))
    sims = c_vecs @ a_vec
    scores = [0.5 * (len(terms & ct) / len(terms)) + 0.5 * float(sim) for ct, sim in zip(c_terms, sims)]
    order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
    result = SentenceSupport(sentence.strip(), span, unsupported_facts=key_facts(sentence) - all_facts)
    best = order[0]
    if scores[best] < min_support:
        return result
    result.support.append((candidates[best], round(scores[best], 3)))
    covered = terms & c_terms[best]
    for i in order[1:3]:
        gain = (terms - covered) & c_terms[i]
        if gain and scores[i] >= min_support and len(gain) >= max(1, len(terms) // 4):
            result.support.append((candidates[i], round(scores[i], 3)))
            covered |= gain
    result.coverage = len(covered) / len(terms)
    return result


def insert_markers(answer: str, sentences: Sequence[SentenceSupport]) -> str:
    """Place [n] markers at the end of each supported sentence (before its final punctuation)."""
    out, cursor = [], 0
    for item in sentences:
        if not item.support or item.verbatim:  # a marker in a line of code would change the code
            continue
        s, e = item.span
        body = answer[s:e].rstrip()
        end = s + len(body)
        punct = len(body) - len(body.rstrip(".!?"))
        insert_at = end - punct
        marks = "".join(f"[{n}]" for n in dict.fromkeys(ps.passage.n for ps, _ in item.support))
        out.append(answer[cursor:insert_at] + " " + marks)
        cursor = insert_at
    out.append(answer[cursor:])
    return "".join(out).replace("  [", " [")


# A bullet's or step's own marker, kept when its text is put in the document's words.
_ITEM_PREFIX = re.compile(r"^[ \t]*(?:\(?\d{1,2}[.)]|[-*•])[ \t]+")
# A quote that is a sentence of its own: it starts like one and ends like one (not cut at a chunk's edge).
_WHOLE = re.compile(r"^[\"“'‘(]?[A-Z0-9].*[.!?][\"”'’)]?$", re.DOTALL)


def quote_in_place(answer: str, sentences: list[SentenceSupport], checks: list[SentenceCheck], most_chars: int = 320) -> tuple[str, list[str]]:
    """The answer with each sentence its quotes do not state put in the quotes' own words, in quotation marks,
    and the sentences left out, in the draft's words.

    A summary's bullet is the model's wording of one document sentence; when the support check
    does not find that wording stated ("- Small, fast, reliable", "- It describes the syntax…",
    two sentences merged into one), the sentence it was matched to is what the document says on
    the point, so the reader gets that sentence instead of a ⚠️ (the idea of RARR's post-hoc
    revision, without a second generation: on a CPU a rewrite per bullet costs seconds). Left out:
    a ✅ sentence the answer already said, word for word (without a notice: the model wrote it
    twice, and the reader has it once); a sentence whose quotes another sentence already shows (or
    holds, or is held in): the reader has the document's words on that point, and the draft's gloss
    of them is one they do not state ("It mentions the limitations", "The default is WAL mode"
    beside the quote that says the rollback journal is). Kept as written, with its ⚠️: a sentence
    no passage sentence matched, and one whose quotes run longer than `most_chars`. `sentences`
    and `checks` are updated to the new text (spans, text, state; `quoted_for` keeps the draft
    sentence; the left-out sentences' entries go).
    """
    shown = {_quoted_text(item, check) for item, check in zip(sentences, checks) if check.supported} - {""}
    pieces, cursor, shift, gone, said = [], 0, 0, [], set()
    for i, (item, check) in enumerate(zip(sentences, checks)):
        s, e = item.span
        quote = "" if check.supported else _quoted_text(item, check)
        repeat = check.supported and _said(item.sentence) in said
        said.add(_said(item.sentence))
        if repeat or quote and any(quote in o or o in quote for o in shown):
            s, e = _whole_line(answer, s, e)
            pieces.append(answer[cursor:s])
            cursor, shift = e, shift - (e - s)
            gone.append((i, repeat))
            continue
        if not quote or len(quote) > most_chars:
            item.span = (s + shift, e + shift)
            continue
        shown.add(quote)
        prefix = m.group(0) if (m := _ITEM_PREFIX.match(answer[s:e])) else ""
        new = f"{prefix}“{quote}”"
        pieces.append(answer[cursor:s] + new)
        cursor = e
        item.span, item.sentence = (s + shift, s + shift + len(new)), new.strip()
        shift += len(new) - (e - s)
        check.quoted_for, check.text, check.supported, check.support, check.reason = check.text, new.strip(), True, None, None
    left_out = [checks[i].text for i, repeat in gone if not repeat]
    for i, _ in reversed(gone):
        del sentences[i], checks[i]
    return "".join(pieces) + answer[cursor:], left_out


def _said(sentence: str) -> str:
    """A sentence's words, without its list marker and case: the same for a bullet the model wrote twice."""
    return " ".join(re.findall(r"\w+", _ITEM_PREFIX.sub("", sentence).lower()))


def _whole_line(text: str, start: int, end: int) -> tuple[int, int]:
    """The span to cut to leave a sentence out: its whole line when it is the line's only text, else
    the sentence with the space after it (or before it, when it ends the line)."""
    line_start, line_end = text.rfind("\n", 0, start) + 1, text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    if not text[end:line_end].strip():
        if not text[line_start:start].strip() or _ITEM_PREFIX.fullmatch(text[line_start:start]):
            return line_start, min(line_end + 1, len(text))
        return len(text[:start].rstrip(" \t")), line_end
    return start, len(text) - len(text[end:].lstrip(" \t"))


def _quoted_text(item: SentenceSupport, check: SentenceCheck) -> str:
    """What a sentence's quotes say, to show in its place: each quote as the passage has it when it is a
    whole sentence, else the document's whole sentence around it that the check read (check.quotes)."""
    parts = []
    for ps, _ in item.support:
        own = " ".join(ps.text.split())
        parts.append(own if _WHOLE.match(own) else next((q for q in check.quotes if own in q), own))
    return " ".join(dict.fromkeys(parts))


SourceReader = Callable[[str], "tuple[str, CleanText] | None"]


def make_citations(sentences: Sequence[SentenceSupport], supported: Sequence[bool], read_source: SourceReader) -> list[Citation]:
    """One Citation per (answer sentence, passage sentence), its quote located in the source file.

    `supported` holds each sentence's support state; a citation is verified only when its
    sentence is supported and its quote stands at the recorded place in the file.
    """
    citations: list[Citation] = []
    for item, ok in zip(sentences, supported):
        for ps, score in item.support:
            start, end, located = locate_quote(ps, read_source)
            citations.append(
                Citation(
                    n=ps.passage.n,
                    source=ps.passage.source,
                    title=ps.passage.title,
                    text=ps.passage.text,
                    quote=ps.text,
                    start=start,
                    end=end,
                    score=score,
                    verified=located and ok,
                    sentence=item.sentence,
                    also_in=list(ps.passage.also_in),
                )
            )
    return citations


def _quote_offset(ps: PassageSentence, cleaned: CleanText) -> int | None:
    """Where the quote starts in the cleaned document (searched again if the file changed since indexing)."""
    if ps.passage.start is None or not ps.text:
        return None
    offset = ps.passage.start + ps.passage.text.index(ps.text, ps.start)
    if cleaned.text[offset : offset + len(ps.text)] != ps.text:
        offset = cleaned.text.find(ps.text)
    return offset if offset >= 0 else None


def locate_quote(ps: PassageSentence, read_source: SourceReader) -> tuple[int | None, int | None, bool]:
    """The quote's span in the source file, and whether the file (as it is now) holds it there."""
    source = read_source(ps.passage.source)
    offset = _quote_offset(ps, source[1]) if source is not None else None
    if source is None or offset is None:
        return None, None, False
    _, cleaned = source
    start, end = cleaned.offsets.span(offset, offset + len(ps.text))
    return start, end, cleaned.offsets.to_clean(start, end) == (offset, offset + len(ps.text))


def prose_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans within paragraphs (blank-line separated): HTML source wraps a sentence over lines."""
    spans = []
    for para in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", text):
        spans += [(para.start() + a, para.start() + b) for a, b in _punkt().span_tokenize(para.group(0))]
    return spans


def whole_sentence(ps: PassageSentence, read_source: SourceReader, window: int = 600) -> str:
    """The quote completed to the document's whole sentence(s) it belongs to.

    Chunks are 64 tokens, so a quote is often a sentence cut at a chunk edge ("is off by default
    and so if the application does nothing to turn it on,"): it cannot state what the whole
    sentence does. The support check reads the whole sentence, found in the cleaned document
    around the quote; the quote itself when the file cannot be read.
    """
    source = read_source(ps.passage.source)
    offset = _quote_offset(ps, source[1]) if source is not None else None
    if source is None or offset is None:
        return ps.text
    text = source[1].text
    lo = max(0, offset - window)
    around = text[lo : offset + len(ps.text) + window]
    spans = [(lo + a, lo + b) for a, b in prose_sentences(around) if lo + b > offset and lo + a < offset + len(ps.text)]
    if not spans:
        return ps.text
    whole = text[spans[0][0] : spans[-1][1]].strip()
    return whole if len(whole) <= len(ps.text) + window else ps.text


def cached_source_reader(folder: Path) -> SourceReader:
    """Read and clean a corpus file once per answer; None when it vanished or became unreadable."""
    from rag.corpus import read_source
    from rag.errors import CorpusError

    @lru_cache(maxsize=64)
    def read(name: str) -> tuple[str, CleanText] | None:
        try:
            return read_source(folder, name)
        except (OSError, CorpusError):
            return None

    return read
