"""The context a broad question needs: whole documents, both sides of a comparison, the text around a step.

A lookup is answered from the few chunks that rank best; a summary from a ranking of 64-token
chunks reads like a list of unrelated quotes, and how-to steps are cut at a chunk's edge. So:

- summary, overview: the named document(s), or the one the topic finds ("the article about X"),
  read whole; a document longer than its share of the budget keeps its opening (where articles
  and manual pages say what they are about) for half of it and chunks spread evenly over the
  rest. "What the documents say about X" reads, from each of the documents X finds, only the
  chunks that hold X's words. Always in reading order;
- comparison: the best passages for each compared side (or each compared document), each given
  its share of the budget and answered on its own (a `Part`): asked to compare, the 1.5B model
  wrote "The first article mentions…" or the same sentence twice, once per side (1 of 5 seed
  comparisons correct), so each side gets its own short answer under its own label;
- how-to, explanation: the best hits, each widened by its neighbouring chunks (the sentence-window
  idea of LlamaIndex's PrevNextNodePostprocessor, which needs the chunks in a docstore; ours live
  in Chroma, so the neighbours come from `Index.document_chunks`).

Every passage is still a chunk of the index, so citations and their support states work as for lookups.

LlamaIndex's TreeSummarize and DocumentSummaryIndex do not fit here. TreeSummarize answers a long
document in several LLM calls, a summary of summaries: at the embedded model's measured 120-290
prompt tokens/s and 12-15 output tokens/s on 2 cores, a 4,000-token page in eight 500-token calls of
~100 output tokens each is over a minute before the answer's first token (the target is 6 s), and
the answer it streams cites summaries, not the page. DocumentSummaryIndex writes a summary per
document with the LLM at ingest: about 40 s for a 4,000-token page (its prompt, then ~150 output
tokens), tens of minutes for the 85 SQLite pages, redone for every changed file, and its sentences
are the model's, which the support check would have to trace back to the page anyway. Reading the page's own opening and its sections' first sentences (`_by_outline`) costs
no model call, fits the same budget, and every sentence it gives is citable as it stands.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from llama_index.core.schema import TextNode

from rag.citations import content_terms, unwrap
from rag.kinds import DOCUMENT_WORDS, SECTION_WORDS, Intent, Kind, topic_of, without_filler
from rag.outline import Outline, Section, named_section, outline
from rag.retrieve import Filters, Part, Retrieval, Retriever, to_passage, count_tokens, term_coverage
from rag.schema import Passage

# How many documents a topic-found summary reads: one ("the article about X") unless the question asks for more.
_MAX_DOCUMENTS = 4
_WINDOW_HITS = 3  # how-to and explanation: hits widened by their neighbours
# A page's opening: its first chunks that hold a sentence (a menu or a table of contents holds none).
_OPENING_CHUNKS = 6
_PROSE = re.compile(r"[A-Za-z][^.!?\n]{40,}[.!?](?:\s|$)")
_WINDOW_DOCUMENTS = 2  # ... from the documents the candidates say most about the question,
_SECOND_DOCUMENT = 0.5  # the second only where it says at least this share of what the first does
_INTRODUCING_SHARE = 4  # a section that fills at most 1/4 of its budget introduces the sections after it (`_section`)

_SIDES = [
    re.compile(r"\bbetween (?P<a>.+?) and (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"^(?:what is |how is )?(?P<a>.+?)\s+(?:vs\.?|versus)\s+(?P<b>.+?)(?:[:?.!].*)?$", re.I),
    re.compile(r"\b(?:compare|contrast) (?P<a>.+?) (?:and|with|to) (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"\bhow (?:does|do|is|are) (?P<a>.+?) (?:differ from|compare (?:with|to)|different from) (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"\bhow (?:do|does) (?P<a>.+?) and (?P<b>.+?) (?:differ|compare)\b", re.I),
]


# Where the second side ends and the rest of the question goes on ("the EU | have done to help", "TCP | according to the pages").
# A verb in -ed ends it too ("Pashinyan | described the prospects"), unless it follows an article ("the revised plan").
_SIDE_END = re.compile(r"\s+(?:have|has|had|did|do|does|is|are|was|were|on|in|about|regarding|according|when|for)\s.*$|,.*$"
                       r"|(?<!\bthe)(?<!\ban)(?<!\ba)\s+\w{3,}ed\s.*$", re.I)
_SIDE_START = re.compile(r"^(?:what|how|which|who)\s+", re.I)


def _holds_sentence(text: str) -> bool:
    """Whether a text holds a sentence, however its file wraps lines (a menu or a table of contents holds none)."""
    return bool(_PROSE.search(unwrap(text)))


def comparison_sides(question: str) -> tuple[str, str] | None:
    """The two things a comparison question compares, when its wording names them."""
    for pattern in _SIDES:
        if match := pattern.search(question.strip()):
            return _SIDE_START.sub("", match["a"].strip(" ,")), _SIDE_END.sub("", match["b"].strip(" ,"))
    return None


def broad_context(intent: Intent, question: str, retriever: Retriever, budget: int, filters: Filters | None = None) -> Retrieval:
    """Numbered passages for a broad question, within `budget` tokens; best_score is the relevance gate's input."""
    if intent.kind is not Kind.COMPARISON and (section := _named_section(intent, question, retriever, budget, filters)):
        return _numbered(*section)
    by_document = intent.kind is Kind.COMPARISON and (intent.whole_corpus or len(intent.documents) > 1)
    if intent.kind in (Kind.SUMMARY, Kind.OVERVIEW) or by_document:
        passages, best = _documents(intent, retriever, budget, filters)
        return _numbered(passages, best, _document_parts(intent, passages, retriever) if by_document else [])
    if intent.kind is Kind.COMPARISON and (sides := comparison_sides(question)):
        return _numbered(*_sides_context(question, sides, retriever, budget, filters))
    return _numbered(*_windows(question, retriever, budget, filters))


def _document_parts(intent: Intent, passages: list[Passage], retriever: Retriever) -> list[Part]:
    """One part per compared document, labelled with its title; a single document is no comparison."""
    titles = retriever.index.titles()
    sources = list(dict.fromkeys(p.source for p in passages))
    about = f" about {intent.topic}" if intent.topic else ""
    return [Part(titles.get(s, s), f"What are the main points of these passages{about}?", [p for p in passages if p.source == s],
                 Kind.SUMMARY.value) for s in sources] if len(sources) > 1 else []


def _documents(intent: Intent, retriever: Retriever, budget: int, filters: Filters | None) -> tuple[list[Passage], float]:
    titles = retriever.index.titles()
    sources = [s for s in titles if not filters or not filters.sources or s in filters.sources]
    best = 1.0  # a document named, or every document: nothing to gate on
    if intent.documents:
        sources = [s for s in intent.documents if s in sources]
    elif intent.topic:
        found = retriever.retrieve(intent.topic, filters=filters)
        best = found.best_score
        ranked = list(dict.fromkeys(p.source for p in found.passages))
        sources = ranked[: _MAX_DOCUMENTS if intent.whole_corpus else 1]
    sources = sources[:_MAX_DOCUMENTS]
    chunks = {s: retriever.index.document_chunks(s) for s in sources}
    if len(intent.documents) == 1 and sources and not intent.whole_corpus and _own_words(intent.topic, titles[sources[0]]) \
            and (section := _topic_section(intent.topic, sources[0], chunks[sources[0]], retriever, budget, filters)):
        return section, best
    share = budget // max(len(sources), 1)
    # "the article about X": X finds the article, which is then read as a whole; "what the documents
    # say about X": only the chunks about X, from each document
    focus = intent.topic if intent.whole_corpus else ""
    passages = [p for s in sources for p in _read_document(chunks[s], share, focus)]
    if not passages and sources:  # no chunk holds the words: the best document, read whole
        passages = _read_document(chunks[sources[0]], budget)
    return passages, best


def _named_section(intent: Intent, question: str, retriever: Retriever, budget: int,
                   filters: Filters | None) -> tuple[list[Passage], float] | None:
    """The section a question names ("the key points of the Western engagement section"), read as a
    document is, from the named documents or those its topic finds; None when it names none."""
    if not SECTION_WORDS.search(question):
        return None
    best = 1.0
    sources = list(intent.documents)
    if not sources and intent.topic:
        found = retriever.retrieve(intent.topic, filters=filters)
        best, sources = found.best_score, list(dict.fromkeys(p.source for p in found.passages))[:_MAX_DOCUMENTS]
    for source in sources:
        chunks = retriever.index.document_chunks(source)
        document = outline(chunks)
        if section := named_section(question, document):
            return _section(chunks, document, section, budget), best
    return None


def _own_words(topic: str, title: str) -> set[str]:
    """The topic's words that are not the named document's title or a word for a document: what in
    the document to read ("the features introduced in version 5.4" of the gnuplot manual), if anything
    ("the online backup API page" is the page "Using the SQLite Online Backup API", all of it)."""
    return content_terms(topic) - content_terms(title) - content_terms(DOCUMENT_WORDS)


def _topic_section(topic: str, source: str, chunks: Sequence[TextNode], retriever: Retriever, budget: int,
                   filters: Filters | None) -> list[Passage] | None:
    """Sections as units: in a named document too long to be read even by its sections' first
    sentences, the section the topic's hits lie in whose heading names most of the topic (a heading
    says what its section is about; a short one that introduces the sections after it is
    outweighed by them in hits), then the one they say most about (the sum of their similarities,
    a hit across a heading shared by its share of each side), read as one (`_section`); None when those sentences fit the
    budget (a page is then read whole, by its outline, and a topic word is taken for part of its
    name: "the online backup API page"), or no hit is in a section.

    "Give an overview of the features introduced in gnuplot version 5.4" names a 311-page manual
    and what in it to read: its opening and a spread of its sections gave the copyright notice and
    leads from every part of it. LlamaIndex's AutoMergingRetriever merges hits into the parent node
    that holds them, but it needs the hierarchy as nodes in a docstore at ingest
    (HierarchicalNodeParser cuts fixed sizes, not the author's sections); here the sections are
    the document's outline, found at question time over the chunks already in Chroma."""
    document = outline(chunks)
    if sum(count_tokens(document.text[a:b]) for a, b in document.leads()) <= budget:
        return None  # its sections' first sentences all fit: it is read whole (`_by_outline`), as asked
    within = Filters(sources=[source], since=filters.since, until=filters.until) if filters else Filters(sources=[source])
    weight: Counter[int] = Counter()
    for hit in retriever.candidates(topic, filters=within).passages:  # a hit across a heading counts for each side by its share
        start, end = hit.start or 0, max(hit.end or 0, (hit.start or 0) + 1)
        for k, section in enumerate(document.sections):
            if (overlap := min(end, section.end) - max(start, section.start)) > 0:
                weight[k] += hit.score * overlap / (end - start)
    if not weight:
        return None
    # of the sections hit, the one whose heading names most of the topic; then the one hit most
    best = max(weight, key=lambda k: (term_coverage(topic, document.sections[k].heading), weight[k]))
    return _section(chunks, document, document.sections[best], budget)


def _section(chunks: Sequence[TextNode], document: Outline, section: Section, budget: int) -> list[Passage]:
    """A section within `budget`, as a document is read (`_read`). One that is little more than its
    heading and a line ("Features introduced in version 5.4: these sections list new commands, plot
    styles…") introduces the sections after it: their headings and first sentences follow, in
    order, while the budget lasts. The outline is flat (shapes give no levels), so where the
    sections under it end is not known; the budget is where reading stops."""
    own = _read(_span_passages(chunks, document.text, section.start, section.end), budget)
    room = budget - sum(count_tokens(p.text) for p in own)
    if room < budget - budget // _INTRODUCING_SHARE:
        return own
    leads = [_passage(_holder(chunks, a), document.text, a, b) for a, b in document.leads(section.end)]
    return own + _within_any(leads, range(len(leads)), room, stop=True)


def _span_passages(chunks: Sequence[TextNode], text: str, start: int, end: int) -> list[Passage]:
    """The chunks that overlap the document's text[start:end], each cut to it."""
    return [_passage(chunk, text, max(start, chunk.start_char_idx or 0), min(end, chunk.end_char_idx or 0))
            for chunk in chunks if (chunk.start_char_idx or 0) < end and (chunk.end_char_idx or 0) > start]


def _passage(chunk: TextNode, text: str, start: int, end: int) -> Passage:
    """text[start:end] as a passage of the document `chunk` is from (which holds its start): its
    offsets keep citations pointing into the file; whole, it is the chunk itself."""
    passage = to_passage(chunk, 1.0)
    piece = text[start:end]
    start, end = start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())
    if (start, end) == (passage.start, passage.end):
        return passage
    return passage.model_copy(update={"node_id": f"{chunk.node_id}:{start}", "text": text[start:end], "start": start, "end": end,
                                      "source_start": None, "source_end": None})


def _read_document(chunks: Sequence[TextNode], budget: int, focus: str = "") -> list[Passage]:
    """A document within `budget`: whole when it fits; with a focus, its chunks holding the focus's
    words; a long one with three sections or more after its opening, by its outline
    (`_by_outline`); else its opening and chunks spread over the rest (`_read`)."""
    passages = [to_passage(c, 1.0) for c in chunks]
    if focus or sum(count_tokens(p.text) for p in passages) <= budget:
        return _read(passages, budget, focus)
    return _by_outline(chunks, passages, budget) or _read(passages, budget)


def _by_outline(chunks: Sequence[TextNode], passages: list[Passage], budget: int) -> list[Passage]:
    """The document's opening (its introduction, within half the budget), then each section's heading and first
    sentences: as many sentences a section as fit them all, or one each from sections spread evenly
    over the document. None ([]) when fewer than three sections follow the opening.

    A spread of 64-token chunks samples a long page at random: the summary of SQLite's 66-chunk
    when-to-use page read none of "Application file format", "Websites" or "Data analysis", its
    headings, and missed what the page says each is for."""
    document = outline(chunks)
    opening = _introduction(_read(passages, budget // 2, opening_only=True), document)
    after = max((p.end or 0 for p in opening), default=0)
    if len(document.leads(after)) < 3:
        return []
    room = budget - sum(count_tokens(p.text) for p in opening)
    leads: list[Passage] = []
    for sentences in range(1, 4):
        pieces = [_passage(_holder(chunks, a), document.text, a, b) for a, b in document.leads(after, sentences)]
        if sum(count_tokens(p.text) for p in pieces) > room:
            break
        leads = pieces
    if not leads:  # one sentence each is too much: the first sections, then sections spread over the rest
        pieces = [_passage(_holder(chunks, a), document.text, a, b) for a, b in document.leads(after)]
        leads = _within_any(pieces, range(len(pieces)), room // 2, stop=True)
        rest = list(range(len(leads), len(pieces)))
        leads += _within_any(pieces, _spread(rest), room - sum(count_tokens(p.text) for p in leads))
    return opening + sorted(leads, key=lambda p: p.start or 0)


def _introduction(opening: list[Passage], document: Outline) -> list[Passage]:
    """The opening up to the first heading after its start: the text before a page's first section
    says what the page is about; what follows belongs to the section, which its lead represents."""
    first = min((p.start or 0 for p in opening), default=0)
    end = next((s.start for s in document.sections if s.start > first), None)
    if end is None:
        return opening
    kept = [p for p in opening if (p.start or 0) < end]
    if kept and (kept[-1].end or 0) > end:
        last = kept[-1]
        text = last.text[: end - (last.start or 0)].rstrip()
        kept[-1] = last.model_copy(update={"node_id": f"{last.node_id}:{last.start}", "text": text, "end": (last.start or 0) + len(text),
                                           "source_start": None, "source_end": None})
    return [p for p in kept if p.text]


def _holder(chunks: Sequence[TextNode], offset: int) -> TextNode:
    """The chunk that holds the document's text at `offset` (or the first after it)."""
    return next((c for c in chunks if (c.end_char_idx or 0) > offset), chunks[-1])


def _within_any(passages: Sequence[Passage], order: Iterable[int], budget: int, stop: bool = False) -> list[Passage]:
    """The passages taken in `order` while each still fits `budget`: one that does not is skipped,
    or with `stop`, ends the list."""
    kept, used = [], 0
    for i in order:
        cost = count_tokens(passages[i].text)
        if used + cost <= budget:
            kept.append(passages[i])
            used += cost
        elif stop:
            break
    return kept


def _read(passages: Sequence[Passage], budget: int, focus: str = "", opening_only: bool = False) -> list[Passage]:
    """A document's passages in reading order within `budget`: with a focus, those holding its words
    (most first; none when no passage does); otherwise all, or the opening for half the budget
    (all of it with `opening_only`) and passages spread evenly over the rest, both of passages that
    hold a sentence: a web page opens with its site's menu and its table of contents, which a
    summary read as its first points."""
    costs = [count_tokens(p.text) for p in passages]
    about = [i for i in range(len(passages)) if term_coverage(focus, passages[i].text) > 0] if focus else []
    if focus and not about:
        return []
    keep: set[int] = set()
    used = 0
    whole = sum(costs) <= budget
    lead = 0 if about else budget if whole or opening_only else budget // 2
    prose = [whole or _holds_sentence(p.text) for p in passages] if not about else [True] * len(passages)
    for i, cost in enumerate(costs):
        if used + cost > lead:
            break
        if prose[i]:
            keep.add(i)
            used += cost
    if opening_only:
        return [passages[i] for i in sorted(keep)]
    rest = [i for i in range(len(passages)) if i not in keep]
    rest = [i for i in rest if prose[i]] or rest
    ranked = sorted(about, key=lambda i: -term_coverage(focus, passages[i].text)) if about else _spread(rest)
    for i in ranked:
        if used + costs[i] <= budget:
            keep.add(i)
            used += costs[i]
    return [passages[i] for i in sorted(keep)]


def side_queries(question: str, sides: tuple[str, str]) -> tuple[str, str]:
    """Each side searched with the rest of the question, without the other side: "Compare what the US
    and the EU have done to help" looks for "US have done help" and "EU have done help" ("US"
    alone is too short a query for the embeddings: best similarity 0.26 on the seeds)."""
    rest = _rest(question, sides)
    return without_filler(f"{sides[0]} {rest}"), without_filler(f"{sides[1]} {rest}")


_ACRONYM = re.compile(r"\b[A-Z]{2,5}\b")
_JOINER = r"(?:[ \t]+(?:of|and|for|the|on)[ \t]+|[ \t-]+)"


def spelled_out(side: str, texts: Sequence[str]) -> list[str]:
    """What the side's acronyms stand for in the texts, each the way the texts most often write it:
    "the EU" -> ["European Union"], "ICJ" -> ["International Court of Justice"]. A side named by its
    acronym found neither the passages nor the sentences that spell it out ("with the help of the
    European Union and United States"), for the search, for the check that a passage names the
    side, and for the model, which was asked about "the EU" alone."""
    words = []
    for acronym in dict.fromkeys(_ACRONYM.findall(side)):
        pattern = re.compile(r"\b" + _JOINER.join(rf"{letter}[a-z]+" for letter in acronym) + r"\b")
        found = Counter(m.group(0) for text in texts for m in pattern.finditer(" ".join(text.split())))
        if found:
            words.append(found.most_common(1)[0][0])
    return words


def _rest(question: str, sides: tuple[str, str]) -> str:
    """The question's subject words besides the two sides ("have done help")."""
    for side in sides:
        question = question.replace(side, " ")
    return topic_of(question)


def _spread(indices: list[int]) -> list[int]:
    """Indices ordered so that any prefix samples the whole range evenly (midpoints first)."""
    order, spans = [], [(0, len(indices))]
    while spans:
        lo, hi = spans.pop(0)
        if lo < hi:
            mid = (lo + hi) // 2
            order.append(indices[mid])
            spans += [(lo, mid), (mid + 1, hi)]
    return order


def _sides_context(question: str, sides: tuple[str, str], retriever: Retriever, budget: int,
                   filters: Filters | None) -> tuple[list[Passage], float, list[Part]]:
    """Half the budget for each side, and a part each: first where the best page sets the two side
    by side (`_side_by_side`), then the passages the whole question finds that name the side, then
    those the side's own query finds. The gate: the question must find something, and so must one
    side at least (a side's query is short, so its similarity runs low).

    Where both sides get the same passages (one page that contrasts them: WAL and the rollback
    journal), there are no parts and the question is answered whole: asked "what do the passages
    say about the rollback journal?" over the WAL page, the model wrote WAL's advantages as the
    rollback journal's, or that WAL "is also the current default"."""
    whole = retriever.retrieve(question, filters=filters)
    parts: list[Part] = []
    side_best = -1.0
    rest = _rest(question, sides)
    both = _side_by_side(sides, whole, retriever)
    for side, query in zip(sides, side_queries(question, sides)):
        names = [side, *spelled_out(side, [p.text for p in whole.passages])]
        found = retriever.retrieve(" ".join([query, *names[1:]]), filters=filters)
        side_best = max(side_best, found.best_score)
        named = [p for p in whole.passages if any(term_coverage(name, p.text) == 1.0 for name in names)]
        ranked: dict[str, Passage] = {}
        for passage in [*both, *named, *found.passages]:
            ranked.setdefault(passage.node_id, passage)
        ask = f"What do the passages say about {' or '.join(names)}" + (f" ({rest})" if rest else "") + "?"
        parts.append(Part(side[:1].upper() + side[1:], ask, _within(list(ranked.values()), budget // 2)))
    unique: dict[str, Passage] = {}
    for part in parts:  # a passage both sides found is one passage, under one number
        part.passages = [unique.setdefault(p.node_id, p) for p in part.passages]
    if len({tuple(p.node_id for p in part.passages) for part in parts}) == 1:
        parts = []  # the same passages for both sides: asked about one side, the model gave it the other's facts
    return list(unique.values()), min(whole.best_score, side_best), parts


def _side_by_side(sides: tuple[str, str], whole: Retrieval, retriever: Retriever, most: int = 2) -> list[Passage]:
    """The first chunks, in reading order, of the best hit's document that name both sides (at least
    half of each side's words: "WAL mode" is mostly "WAL" on its page).

    A page defines and contrasts what it covers near its top ("Multi-thread. In this mode… Serialized.
    In serialized mode… with no restriction"; "advantages and disadvantages to using WAL instead of a
    rollback journal"), and a ranking of 64-token chunks put those below the sentences that repeat the
    two names in passing (the SQLite pages: neither page's definition among either side's hits)."""
    if not whole.passages:
        return []
    best = whole.passages[0]
    chunks = retriever.index.document_chunks(best.source)
    named = [c for c in chunks if all(term_coverage(side, c.get_content()) >= 0.5 for side in sides)]
    return [to_passage(c, best.score) for c in named[:most]]


def window_hits(candidates: Sequence[Passage]) -> tuple[list[str], list[Passage]]:
    """The documents to read around hits and the hits to widen, theirs, most similar first. The
    documents: the one the candidates say most about the question (by the sum of their
    similarities), and the one holding the most similar chunk, or else a second that says at least
    half as much as the first."""
    mass: dict[str, float] = {}
    for hit in candidates:
        mass[hit.source] = mass.get(hit.source, 0.0) + max(hit.score, 0.0)
    if not mass:
        return [], []
    ranked = sorted(mass, key=lambda source: -mass[source])
    closest = max(candidates, key=lambda h: h.score).source
    second = [s for s in ranked[1:_WINDOW_DOCUMENTS] if mass[s] >= mass[ranked[0]] * _SECOND_DOCUMENT]
    documents = list(dict.fromkeys([ranked[0], closest, *second]))[:_WINDOW_DOCUMENTS]
    return documents, sorted((h for h in candidates if h.source in documents), key=lambda h: -h.score)[:_WINDOW_HITS]


def _windows(question: str, retriever: Retriever, budget: int, filters: Filters | None) -> tuple[list[Passage], float]:
    """The hits most similar to the question, each with its neighbouring chunks, from the document
    the candidates say most about it (the sum of its hits' similarities) and the one holding the
    most similar chunk, or a second one that says at least half as much (`window_hits`); then,
    while the budget lasts, the first document's opening.

    The fused ranking that serves lookups (BM25 with the vectors) put word matches first: asked how
    to back up a database while it is in use, its first hits were the shell's --readonly option,
    and the backup page's "The backup API is used as follows…" (the most similar chunk) came tenth.
    A page that says less is left out: its chunks use the question's words in passing (the CSV
    virtual table's page, asked how to import a CSV file in the shell, was the one the model
    followed). A page's opening is where it says what it is about, often the answer itself ("open
    the database using the special filename :memory:"), which no window reached.
    """
    found = retriever.candidates(question, filters=filters)
    documents, hits = window_hits(found.passages)
    chunks_of = {source: retriever.index.document_chunks(source) for source in dict.fromkeys([*documents[:1], *(h.source for h in hits)])}
    chosen: dict[str, Passage] = {}
    share = budget // _WINDOW_HITS
    for hit in hits:
        chunks = chunks_of[hit.source]
        at = next((i for i, c in enumerate(chunks) if c.node_id == hit.node_id), None)
        window = [hit] if at is None else [to_passage(c, hit.score) for c in chunks[max(at - 1, 0): at + 2]]
        for passage in _within(window, share):
            chosen.setdefault(passage.node_id, passage)
    passages = list(chosen.values())
    if documents:
        room = budget - sum(count_tokens(p.text) for p in passages)
        opening = [c for c in chunks_of[documents[0]][:_OPENING_CHUNKS] if _holds_sentence(c.get_content())]
        best = max(h.score for h in found.passages if h.source == documents[0])
        lead = [to_passage(c, best) for c in opening[:2] if c.node_id not in chosen]
        passages = _within(lead, room) + passages
    return passages, found.best_score


def _within(passages: Sequence[Passage], budget: int) -> list[Passage]:
    """The leading passages that fit `budget`. Unlike retrieve.fit_budget, which skips a passage that
    does not fit and tries the next, it stops there: a window around a hit stays contiguous."""
    kept, used = [], 0
    for passage in passages:
        cost = count_tokens(passage.text)
        if kept and used + cost > budget:
            break
        kept.append(passage)
        used += cost
    return kept


def _numbered(passages: list[Passage], best: float, parts: list[Part] | None = None) -> Retrieval:
    """Number the passages once: a part's prompt shows its passages under these same numbers."""
    for n, passage in enumerate(passages, start=1):
        passage.n = n
    return Retrieval(passages, best, parts or [])
